"""Resumable builds: each finished evaluation of a build, kept on disk and read back on a rerun.

A full text build is hours of CPU on two cores (``docs/SUITE.md``, "Build"); a build stopped
half-way (a session that ends, a killed process) loses nothing it finished. Every stage of
:class:`~tswitch.suites.experiments.Experiments` (one baseline, one alpha of the grid, one C of the
sweep, one point of the pulse experiment) is stored as JSON under a key, in one file per build
identity next to the cached fine-tunes::

    ~/.cache/tswitch/NAME/stages-<identity>.json

The identity hashes everything a stage's number depends on: the suite spec (tasks, splits, recipe,
grids), the fine-tune files, the tswitch version and the source of the modules that compute the
numbers (merging, core, codec, routing, models, pack and the experiments themselves). Change any of
them and the build starts from an empty file; ``demos/build_suite.py --fresh`` discards it by hand.
The file is rewritten atomically after every stage (temp file, then rename).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from .. import __version__

SECONDS_KEY = "__seconds__"  # reserved key of the stages file: compute seconds per stage

# the modules whose code decides a stage's number (a change there invalidates the stored stages)
_SOURCES = (
    "merging",
    "core",
    "codec",
    "routing",
    "models",
    "pack.py",
    "io.py",
    "suites/experiments.py",
    "suites/evaluate.py",
    "suites/data",
)


def _source_digest(root: str) -> str:
    h = hashlib.sha256()
    for part in _SOURCES:
        path = os.path.join(root, part)
        files = sorted(glob.glob(os.path.join(path, "**", "*.py"), recursive=True)) if os.path.isdir(path) else [path]
        for f in files:
            h.update(os.path.relpath(f, root).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def build_identity(spec, finetune_files: Iterable[str | None]) -> str:
    """A short hash of what a build's numbers depend on (see the module docstring)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    blob = json.dumps(
        {"spec": asdict(spec), "finetunes": list(finetune_files), "version": __version__},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256((blob + _source_digest(root)).encode()).hexdigest()[:16]


class StageCache:
    """``get(key, compute)``: the stored value of ``key``, or ``compute()`` stored then returned.

    Values go through JSON both ways, so a resumed build and a fresh one see the same structures
    (string keys, lists). ``hits`` counts the stages read back from the file as it was when opened
    (an earlier run's), for the build's provenance; :meth:`seconds` sums the compute time of every
    stored stage, whichever run computed it (the file keeps it under the reserved key ``__seconds__``).
    """

    def __init__(self, path: str):
        self.path = path
        self.hits = 0
        self._data: dict[str, Any] = {}
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                self._data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._data = {}  # unreadable: recompute everything, the next save replaces it
        times = self._data.pop(SECONDS_KEY, {})
        self._seconds: dict[str, float] = times if isinstance(times, dict) else {}
        self._earlier = frozenset(self._data)

    @classmethod
    def for_build(cls, folder: str, spec, finetune_files: Iterable[str | None]) -> StageCache:
        return cls(os.path.join(folder, f"stages-{build_identity(spec, finetune_files)}.json"))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self._data:
            self.hits += key in self._earlier
            return json.loads(json.dumps(self._data[key]))
        t0 = time.perf_counter()
        value = json.loads(json.dumps(compute()))
        self._data[key] = value
        self._seconds[key] = round(time.perf_counter() - t0, 1)
        self._save()
        return json.loads(json.dumps(value))

    def seconds(self) -> float | None:
        """Compute seconds summed over the stored stages; ``None`` when some stage has no time (a
        file written before times were kept)."""
        if any(key not in self._seconds for key in self._data):
            return None
        return float(sum(self._seconds[key] for key in self._data))

    def discard(self) -> None:
        self._data, self._earlier, self._seconds = {}, frozenset(), {}
        if os.path.exists(self.path):
            os.remove(self.path)

    def _save(self) -> None:
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stages-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**self._data, SECONDS_KEY: self._seconds}, f)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
