"""The command registry and the helpers every command shares (one line per user error)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

COMMANDS: dict[str, tuple] = {}  # name -> (fill parser, run, help)


class UsageError(ValueError):
    """A malformed command-line value."""


def command(name: str, help: str, fill: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated function as sub-command ``name``; ``fill`` adds its arguments."""

    def register(run):
        COMMANDS[name] = (fill, run, help)
        return run

    return register


def parse_pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` items (also comma-separated) -> ordered pairs; duplicate names refused."""
    pairs = []
    for item in items:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name or not value:
                raise UsageError(f"{what} must look like NAME=VALUE, got {part!r}")
            pairs.append((name, value))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise UsageError(f"{what}: a name is given twice: {names}")
    return pairs


def _alpha(text: str) -> float:
    from ..core.pspar import validate_alpha

    try:
        return validate_alpha(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be in [0, 1), got {text}") from None
