"""``manifest.json`` of a suite (docs/SUITE.md) as a frozen, validated dataclass.

Every reader of a suite's manifest goes through :class:`Manifest`: a missing or mistyped field is a
one-line :class:`ManifestError` naming it, never a ``KeyError`` three modules away. Fields this
version does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..codec.container import atomic_write_bytes

MANIFEST_VERSION = 2  # 2: fine-tunes and exemplar indices recorded at build time (suites of 0.2.0)


class ManifestError(ValueError):
    """A manifest is missing a field or holds one of the wrong type (one line)."""


def _get(obj: Mapping, key: str, kind, where: str, default: Any = ...):
    if key not in obj or obj[key] is None:
        if default is not ...:
            return default
        raise ManifestError(f"{where}: missing {key!r}")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class RouterRef:
    """A router file of the suite and the C it is served with."""

    file: str
    k: int
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Mapping, where: str) -> RouterRef:
        if not isinstance(obj, Mapping):
            raise ManifestError(f"{where} must be an object")
        k = _get(obj, "k", int, where)
        if k < 1:
            raise ManifestError(f"{where}: 'k' must be >= 1, got {k}")
        return cls(_get(obj, "file", str, where), k, {x: v for x, v in obj.items() if x not in ("file", "k")})

    def to_dict(self) -> dict:
        return {"file": self.file, "k": self.k, **self.extra}


@dataclass(frozen=True)
class FlexRef:
    """The FlexSwitch pack and Auto-FlexSwitch router a suite serves (written by its flex collect)."""

    pack: str
    router: RouterRef

    @classmethod
    def from_dict(cls, obj: Mapping) -> FlexRef:
        if not isinstance(obj, Mapping):
            raise ManifestError("manifest 'flex' must be an object")
        return cls(
            _get(obj, "pack", str, "manifest 'flex'"),
            RouterRef.from_dict(_get(obj, "router", dict, "manifest 'flex'"), "manifest 'flex.router'"),
        )

    def to_dict(self) -> dict:
        return {"pack": self.pack, "router": self.router.to_dict()}


@dataclass(frozen=True)
class TaskInfo:
    """One task of the suite: its name, class labels, loader, and whatever else the builder recorded."""

    name: str
    labels: tuple[str, ...]
    loader: dict
    normalize: bool = False
    description: str = ""
    examples: tuple = ()
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Mapping, i: int) -> TaskInfo:
        where = f"manifest task {i}"
        if not isinstance(obj, Mapping):
            raise ManifestError(f"{where} must be an object")
        labels = _get(obj, "labels", list, where)
        loader = _get(obj, "loader", dict, where)
        _get(loader, "name", str, f"{where} loader")
        known = ("name", "labels", "loader", "normalize", "description", "examples")
        return cls(
            _get(obj, "name", str, where),
            tuple(str(x) for x in labels),
            dict(loader),
            bool(obj.get("normalize", False)),
            str(obj.get("description") or ""),
            tuple(obj.get("examples") or ()),
            {k: v for k, v in obj.items() if k not in known},
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "loader": self.loader,
            "normalize": self.normalize,
            "description": self.description,
            "examples": list(self.examples),
            **self.extra,
        }


@dataclass(frozen=True)
class Manifest:
    """A suite's ``manifest.json``.

    ``finetunes`` (task -> cached checkpoint path relative to the fine-tune cache) and
    ``exemplar_ids`` (task -> train ids of its Auto-Switch exemplars) are recorded by builders of
    version 2; FlexSwitch training reads them instead of recomputing either.
    """

    name: str
    modality: str
    adapter: str
    adapter_args: dict
    tasks: tuple[TaskInfo, ...]
    pack: str
    router: RouterRef
    heads: str = "heads.safetensors"
    alpha: float | None = None
    dense_pattern: str | None = None
    eval_batch: int = 64
    split_seed: int = 0
    flex: FlexRef | None = None
    finetunes: dict[str, str] | None = None
    exemplar_ids: dict[str, list[str]] | None = None
    format_version: int = MANIFEST_VERSION
    extra: dict = field(default_factory=dict)

    _KNOWN = (
        "name",
        "modality",
        "adapter",
        "tasks",
        "pack",
        "router",
        "heads",
        "alpha",
        "dense_pattern",
        "eval_batch",
        "split_seed",
        "flex",
        "finetunes",
        "exemplar_ids",
        "format_version",
    )

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskInfo:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ManifestError(f"suite {self.name} has no task {name!r}; it has: {', '.join(self.task_names)}")

    @classmethod
    def from_dict(cls, obj: Mapping) -> Manifest:
        if not isinstance(obj, Mapping):
            raise ManifestError("manifest must be a JSON object")
        version = _get(obj, "format_version", int, "manifest", 1)
        if version > MANIFEST_VERSION:
            raise ManifestError(f"manifest version {version} is newer than this tswitch reads ({MANIFEST_VERSION})")
        adapter = _get(obj, "adapter", dict, "manifest")
        tasks = tuple(TaskInfo.from_dict(t, i) for i, t in enumerate(_get(obj, "tasks", list, "manifest")))
        if not tasks:
            raise ManifestError("manifest: 'tasks' is empty")
        modality = _get(obj, "modality", str, "manifest")
        if modality not in ("text", "image"):
            raise ManifestError(f"manifest: 'modality' must be 'text' or 'image', got {modality!r}")
        flex = obj.get("flex")
        return cls(
            name=_get(obj, "name", str, "manifest"),
            modality=modality,
            adapter=_get(adapter, "name", str, "manifest adapter"),
            adapter_args=dict(_get(adapter, "args", dict, "manifest adapter", {})),
            tasks=tasks,
            pack=_get(obj, "pack", str, "manifest"),
            router=RouterRef.from_dict(_get(obj, "router", dict, "manifest"), "manifest 'router'"),
            heads=_get(obj, "heads", str, "manifest", "heads.safetensors"),
            alpha=_get(obj, "alpha", float, "manifest", None),
            dense_pattern=_get(obj, "dense_pattern", str, "manifest", None),
            eval_batch=_get(obj, "eval_batch", int, "manifest", 64),
            split_seed=_get(obj, "split_seed", int, "manifest", 0),
            flex=FlexRef.from_dict(flex) if flex else None,
            finetunes=dict(_get(obj, "finetunes", dict, "manifest", {})) or None,
            exemplar_ids=dict(_get(obj, "exemplar_ids", dict, "manifest", {})) or None,
            format_version=version,
            extra={k: v for k, v in obj.items() if k not in cls._KNOWN},
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "name": self.name,
            "format_version": self.format_version,
            "modality": self.modality,
            "adapter": {"name": self.adapter, "args": self.adapter_args},
            "tasks": [t.to_dict() for t in self.tasks],
            "pack": self.pack,
            "heads": self.heads,
            "alpha": self.alpha,
            "dense_pattern": self.dense_pattern,
            "router": self.router.to_dict(),
            "eval_batch": self.eval_batch,
            "split_seed": self.split_seed,
            **self.extra,
        }
        for key, value in (("finetunes", self.finetunes), ("exemplar_ids", self.exemplar_ids)):
            if value is not None:
                out[key] = value
        if self.flex is not None:
            out["flex"] = self.flex.to_dict()
        return out

    def with_flex(self, flex: FlexRef | None) -> Manifest:
        return replace(self, flex=flex)

    @classmethod
    def load(cls, folder: str) -> Manifest:
        path = os.path.join(folder, "manifest.json")
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
        try:
            return cls.from_dict(obj)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}") from None

    def save(self, folder: str) -> None:
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        atomic_write_bytes(os.path.join(folder, "manifest.json"), text.encode("utf-8"))
