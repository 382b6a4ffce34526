"""Where the built suites live: ``$TSWITCH_ASSETS``, else the ``assets/`` folder of the checkout.

An installed tswitch (``pip install``) has no ``assets/`` of its own: ``app.py`` points
``$TSWITCH_ASSETS`` at the ``assets/`` beside it, and a suite can always be named by its folder.
Nothing here depends on the working directory.
"""

from __future__ import annotations

import os

ENV_VAR = "TSWITCH_ASSETS"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding tswitch/


def assets_dir() -> str | None:
    """``$TSWITCH_ASSETS``, else ``assets/`` of the source checkout tswitch is imported from, else ``None``
    (an installed package: its parent is site-packages, whose ``assets/`` would be someone else's)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if os.path.isfile(os.path.join(_ROOT, "pyproject.toml")):
        return os.path.join(_ROOT, "assets")
    return None
