"""Merge methods as data: one registry entry per method, carrying its name and paper.

Each method registers itself with :func:`register` where it is defined (:mod:`.static`,
:mod:`.dynamic`); importing :mod:`tswitch.merging` imports both, so the registry is complete
whenever it can be reached. Look a method up with :func:`get_method`, list them with
:func:`list_methods`.

Two kinds (T-Switch §2; journal §II):

- ``"static"``: one merged delta for every input, ``fn(task_vectors, **hparams) -> TaskVector``;
  the caller applies it with ``delta.apply_to(theta_0)``.
- ``"dynamic"``: task-specific deltas chosen per input (an oracle task id or a router),
  ``fn(...) -> list[TaskVector]`` (one delta per task) or, for T-Switch, one delta for the
  given per-input weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("static", "dynamic")

_REGISTRY: dict[str, MergeMethod] = {}


@dataclass(frozen=True)
class MergeMethod:
    """One registry entry.

    Attributes:
        name: registry key, e.g. ``"ties"``.
        paper: arXiv id of the paper that defines the method, e.g. ``"2306.01708"``.
        url: ``https://arxiv.org/abs/<paper>``.
        kind: ``"static"`` or ``"dynamic"``.
        description: one line saying what the method does.
        fn: the function implementing it.
    """

    name: str
    paper: str
    url: str
    kind: str
    description: str
    fn: Callable

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def register(name: str, paper: str, kind: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator adding ``fn`` to the registry under ``name``; returns ``fn`` unchanged.

    Raises:
        ValueError: ``name`` is taken, ``kind`` is not ``"static"``/``"dynamic"``, or
            ``description`` is not one line.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if "\n" in description:
        raise ValueError(f"description of {name!r} must be one line")

    def decorator(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"merge method {name!r} is already registered")
        _REGISTRY[name] = MergeMethod(
            name=name, paper=paper, url=f"https://arxiv.org/abs/{paper}", kind=kind, description=description, fn=fn
        )
        return fn

    return decorator


def get_method(name: str) -> MergeMethod:
    """The registry entry called ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown merge method {name!r}; valid: {valid}") from None


def list_methods(kind: str | None = None) -> list[MergeMethod]:
    """Every registered method sorted by name, optionally only those of one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    return [m for _, m in sorted(_REGISTRY.items()) if kind is None or m.kind == kind]
