"""The suites the app serves, and their files, read lazily and cached read-only.

Every suite under ``assets/`` is served, plus every folder listed in ``$TSWITCH_SUITES``
(``os.pathsep``-separated; tests and development point it at smoke suites). A suite is known by the
``name`` of its manifest. Everything below is cached per suite and shared by every visitor: callers
must treat the returned dicts, arrays and :class:`~tswitch.suites.suite.Suite` objects as read-only.
Heavy parts (the backbone, switches, router) load on first use, once, under a per-suite lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from functools import cache, lru_cache

from ..assets import assets_dir
from ..suites.manifest import Manifest, ManifestError
from ..suites.methods import get_method, served_by
from ..suites.stats import annotate, test_sizes
from . import text

ENV_VAR = "TSWITCH_SUITES"
MAX_K = 50  # the k slider's upper end when a suite has more exemplars

log = logging.getLogger(__name__)


class UnknownSuite(ValueError):
    """A suite name the app does not serve."""


@dataclass(frozen=True)
class SuiteInfo:
    """What the page needs to know of a suite without loading it (its manifest)."""

    name: str
    path: str
    manifest: Manifest

    @property
    def modality(self) -> str:
        return self.manifest.modality

    @property
    def task_names(self) -> list[str]:
        return self.manifest.task_names

    def default_k(self, method: str = "auto-switch") -> int:
        """The C the suite serves a routed method with (:data:`tswitch.suites.methods.SERVED`)."""
        default = get_method(method).default_k
        return default(self.manifest) if default is not None else 1

    @property
    def methods(self) -> list[str]:
        """The routed methods this suite offers (Auto-Switch; Auto-FlexSwitch when it has a FlexSwitch run)."""
        return served_by(self.manifest, routed=True)

    def file(self, key: str) -> str:
        return os.path.join(self.path, key)

    def examples(self) -> list[tuple[str, str]]:
        """``(task, example)`` pairs: the text, or the absolute path of the image file."""
        pairs = []
        for task in self.manifest.tasks:
            for example in task.examples:
                if self.modality == "image":
                    path = os.path.realpath(os.path.join(self.path, example))
                    if not path.startswith(os.path.realpath(self.path) + os.sep) or not os.path.isfile(path):
                        continue  # a manifest may only point inside its own folder
                    example = path
                pairs.append((task.name, example))
        return pairs


def suite_paths(root: str | None = None, extra: str | None = None) -> list[str]:
    """Folders holding a ``manifest.json``: those under ``root`` (default: :func:`tswitch.assets.assets_dir`),
    then those listed in ``extra``."""
    root = root if root is not None else assets_dir()
    candidates = []
    if root is not None and os.path.isdir(root):
        candidates = [(os.path.join(root, d), False) for d in sorted(os.listdir(root))]
    candidates += [(f, True) for f in (extra or "").split(os.pathsep) if f]
    seen, paths = set(), []
    for folder, explicit in candidates:
        real = os.path.realpath(folder)
        if not os.path.isfile(os.path.join(real, "manifest.json")):
            if explicit:
                log.warning("%s (from $%s) holds no manifest.json: not a suite", folder, ENV_VAR)
        elif real not in seen:
            seen.add(real)
            paths.append(real)
    return paths


@lru_cache(maxsize=1)
def catalogue() -> dict[str, SuiteInfo]:
    """Name -> :class:`SuiteInfo` of every suite served (read once per process)."""
    suites: dict[str, SuiteInfo] = {}
    for path in suite_paths(extra=os.environ.get(ENV_VAR)):
        try:
            manifest = Manifest.load(path)
            name = manifest.name
        except ManifestError as exc:
            log.warning("%s: unreadable manifest, suite skipped (%s)", path, exc)
            continue
        if name in suites:
            name = f"{name} ({path})"
        suites[name] = SuiteInfo(name, path, manifest)
    return suites


def names() -> list[str]:
    return list(catalogue())


def get(name) -> SuiteInfo:
    """The suite called ``name``; :class:`UnknownSuite` (listing the valid names) otherwise."""
    suites = catalogue()
    if not isinstance(name, str) or name not in suites:
        raise UnknownSuite(text.UNKNOWN_SUITE.format(name=name, valid=", ".join(suites) or text.NO_SUITES))
    return suites[name]


# -- the runtime (models), loaded once per suite -----------------------------------------------------
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_READY: set[str] = set()
_LOAD_STEPS = ("adapter", "heads", "pack", "router", "exemplars", "engine", "auto_switch")


@cache
def _suite(path: str):
    from ..suites.suite import Suite

    return Suite(path)


def runtime(name: str, progress=None):
    """The loaded :class:`~tswitch.suites.suite.Suite` (models, switches and router in memory).

    The first call per suite loads everything under a lock, reporting each step to ``progress``
    (a ``gr.Progress`` or any ``callable(fraction, desc=...)``); later calls return at once.
    """
    info = get(name)
    suite = _suite(info.path)
    if info.path in _READY:
        return suite
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(info.path, threading.Lock())
    with lock:
        if info.path not in _READY:
            for i, part in enumerate(_LOAD_STEPS):
                if progress is not None:
                    progress(i / len(_LOAD_STEPS), desc=text.LOADING.format(part=part.replace("_", "-"), suite=name))
                getattr(suite, part)
            _READY.add(info.path)
    return suite


# -- suite files, each read once -----------------------------------------------------------------
@cache
def results(name: str) -> dict:
    """The suite's ``results.json``; rows a build wrote without intervals get them here, from each
    task's accuracy and its recorded test size (``k / n`` is exact, so the interval is the build's)."""
    with open(get(name).file("results.json"), encoding="utf-8") as f:
        out = json.load(f)
    sizes = test_sizes(get(name).manifest)
    if sizes and any("average_ci" not in r for r in out.get("methods", {}).values()):
        out = annotate(out, sizes)
    return out


@cache
def exemplars(name: str) -> list[dict]:
    with open(get(name).file("exemplars.json"), encoding="utf-8") as f:
        return json.load(f)


def max_k(name: str, method: str = "auto-switch") -> int:
    """The k slider's range end: ``min(MAX_K, entries the router searches)`` — the exemplars for
    Auto-Switch, the K-means centres (``results.json["flex"]``) for Auto-FlexSwitch."""
    if get_method(method).neighbours == "centres":
        entries = results(name).get("flex", {}).get("routing", {}).get("low_rank", {}).get("entries", MAX_K)
        return max(1, min(MAX_K, int(entries)))
    return max(1, min(MAX_K, len(exemplars(name))))


@cache
def pack_path(name: str) -> str:
    info = get(name)
    return info.file(info.manifest.pack)


@cache
def pack_header(name: str):
    """The pack's :class:`~tswitch.codec.container.PackHeader` (metadata only)."""
    from ..codec.container import read_header

    return read_header(pack_path(name))


@cache
def pack_report(name: str) -> dict:
    """``tswitch inspect``'s report of the suite's pack (header only)."""
    from ..pack import SwitchPack
    from ..report import pack_report as report

    return report(SwitchPack(pack_path(name)))


@cache
def task_scales(name: str):
    """``(tasks, tensors)`` float32 array of every stored switch scale."""
    import numpy as np

    from ..codec.container import read_task_scales

    path, header = pack_path(name), pack_header(name)
    return np.stack([read_task_scales(path, header, t.name) for t in header.tasks])


@lru_cache(maxsize=4)  # a decoded tensor holds two bool planes of its size
def stored_tensor(name: str, task: str, tensor: str):
    """One task's stored tensor, decoded: a switch (``TSwitch``, or FlexSwitch's ``QSwitch``, both
    with ``mask`` and ``reconstruct()``), or a float32 tensor for a ``dense-f16`` entry."""
    from ..codec.container import read_tensor_payload
    from ..pack import decode_tensor

    path, header = pack_path(name), pack_header(name)
    index = [s.name for s in header.tensors].index(tensor)
    entry = header.tasks[header.task_index(task)]
    payload, scale, codebook = read_tensor_payload(path, header, task, index)
    return decode_tensor(
        payload,
        header.tensors[index],
        entry.encodings[index],
        entry.widths[index],
        scale,
        entry.nnz[index],
        codebook,
    )


def clear_caches() -> None:
    """Forget every cached suite (tests; after suites change on disk)."""
    for fn in (catalogue, _suite, results, exemplars, pack_path, pack_header, pack_report, task_scales, stored_tensor):
        fn.cache_clear()
    _READY.clear()
