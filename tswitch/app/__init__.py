"""The Gradio demo: try Auto-Switch on a suite, compare methods, look inside a switch.

- :mod:`.text`: every string the page shows.
- :mod:`.charts`: plotly figure functions (data in, figure out).
- :mod:`.catalogue`: the suites the app serves and their files, read lazily and cached read-only.
- :mod:`.callbacks`: the event callbacks, plain functions with unit tests.
- :mod:`.layout`: the ``gr.Blocks`` page and its event wiring.

Importing this package imports nothing heavy: no gradio, no torch, no suite is read.
"""

from __future__ import annotations


def build_demo(*args, **kwargs):
    """The ``gr.Blocks`` app (see :func:`tswitch.app.layout.build_demo`)."""
    from .layout import build_demo as build

    return build(*args, **kwargs)


__all__ = ["build_demo"]
