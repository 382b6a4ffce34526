"""One registry of model adapters, keyed by name (``"hf-text"``, ``"timm-effnet"``, ...).

Adapters register themselves with :func:`register_adapter` where they are defined; importing
:mod:`tswitch.models` imports every adapter module (cheap: transformers, timm and open_clip are
imported only when an adapter is built), so the registry is complete whenever it can be reached.
A suite names its backbone as ``{"name": ..., "args": {...}}`` and gets it back with
``load_adapter(name, **args)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .base import ModelAdapter

A = TypeVar("A", bound=type[ModelAdapter])

_ADAPTERS: dict[str, Callable[..., ModelAdapter]] = {}


def register_adapter(name: str) -> Callable[[A], A]:
    """Class decorator adding an adapter to the registry under ``name`` (and setting ``cls.name``).

    Raises:
        ValueError: ``name`` is empty or already taken.
    """
    if not name:
        raise ValueError("adapter name must be non-empty")

    def decorate(cls: A) -> A:
        if name in _ADAPTERS:
            raise ValueError(f"adapter {name!r} is already registered")
        cls.name = name
        _ADAPTERS[name] = cls
        return cls

    return decorate


def list_adapters() -> list[str]:
    """Names of the registered adapters, sorted."""
    return sorted(_ADAPTERS)


def load_adapter(name: str, **args) -> ModelAdapter:
    """Build the adapter registered under ``name`` with keyword ``args``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
        ImportError: the adapter's optional dependency is missing (the message says what to install).
    """
    if name not in _ADAPTERS:
        raise ValueError(f"unknown model adapter {name!r}; valid: {', '.join(list_adapters())}")
    return _ADAPTERS[name](**args)
