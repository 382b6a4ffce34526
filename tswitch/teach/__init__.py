"""Teach a suite a new task from a visitor's labelled lines, and serve it beside the suite's own.

- :mod:`.data`: parse and check labelled lines (pasted ``label<TAB>text`` or a CSV), the held-back
  split, the bundled example tasks.
- :mod:`.run`: :func:`teach`: zero-shot head, a fine-tune within a time cap, the switch, exemplars and
  the held-back accuracies (:mod:`.accuracy`: Wilson intervals).
- :mod:`.serve`: Auto-Switch over the suite's tasks and the taught ones.
- :mod:`.store`: the live tasks (per visitor, capped, evicted least recently used) and the line
  for the fine-tune.
- :mod:`.export`: the download: the switch as ``.tsw``, the router exemplars, the suite with the task.

Nothing here imports gradio; :mod:`tswitch.app.teach` is the page's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import TeachCancelled, TeachConfig
from .data import LabelledLines, TeachError, check_name, parse_csv, parse_lines

if TYPE_CHECKING:
    from .run import teach
    from .task import TaughtTask


def __getattr__(name: str) -> Any:
    """``teach`` and ``TaughtTask`` import torch: loaded on first use, so the page builds without it."""
    if name == "teach":
        from .run import teach

        return teach
    if name == "TaughtTask":
        from .task import TaughtTask

        return TaughtTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LabelledLines",
    "TaughtTask",
    "TeachCancelled",
    "TeachConfig",
    "TeachError",
    "check_name",
    "parse_csv",
    "parse_lines",
    "teach",
]
