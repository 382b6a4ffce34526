"""The task-data record every loader returns, and the loader registry.

A loader is a plain function ``(**args) -> TaskData`` registered under a name; a suite's manifest
names it with its arguments, and the suite's ``splits.json`` stores lists of ``TaskData.ids``, so a
loader must return the same items with the same ids on every call and every machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TaskData:
    """One classification task's items, in a fixed order.

    Attributes:
        inputs: ``str`` per item for text tasks, ``PIL.Image.Image`` (mode ``L`` or ``RGB``) for images.
        labels: (n,) int64 class indices into ``label_names``.
        label_names: the class names, index = label.
        ids: a stable, unique string per item; split files are lists of these.
        description: one sentence a person can read in the app.
        source: where the items come from (package and file, or "rendered").
    """

    inputs: Sequence[Any]  # a list, or a lazily opened sequence of images
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]
    description: str
    source: str

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "label_names", tuple(self.label_names))
        n = len(self.inputs)
        if labels.shape != (n,) or len(self.ids) != n:
            raise ValueError(
                f"inputs, labels and ids must have one entry per item, got {n}, {labels.shape} and {len(self.ids)}"
            )
        if n and (labels.min() < 0 or labels.max() >= len(self.label_names)):
            raise ValueError(f"labels must lie in [0, {len(self.label_names)}), got [{labels.min()}, {labels.max()}]")
        if len(set(self.ids)) != n:
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> dict[str, int]:
        """Items per class name, in label order."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.label_names, counts)}

    def subset(self, indices) -> TaskData:
        """The items at ``indices`` (in that order), with everything else unchanged."""
        indices = [int(i) for i in indices]
        return dataclasses.replace(
            self,
            inputs=[self.inputs[i] for i in indices],
            labels=self.labels[indices] if indices else self.labels[:0],
            ids=[self.ids[i] for i in indices],
        )


Loader = Callable[..., TaskData]
_LOADERS: dict[str, Loader] = {}


def register_loader(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register ``fn`` as the loader called ``name``."""

    def decorate(fn: Loader) -> Loader:
        if name in _LOADERS and _LOADERS[name] is not fn:
            raise ValueError(f"a data loader named {name!r} is already registered")
        _LOADERS[name] = fn
        return fn

    return decorate


def get_loader(name: str) -> Loader:
    """The loader registered as ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        return _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown data loader {name!r}; choose one of {', '.join(list_loaders())}") from None


def list_loaders() -> list[str]:
    """The registered loader names, sorted."""
    return sorted(_LOADERS)


def load_task(name: str, **args: Any) -> TaskData:
    """``get_loader(name)(**args)``: what a suite manifest's ``{"name", "args"}`` entry means."""
    return get_loader(name)(**args)
