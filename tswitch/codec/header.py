"""The metadata of a ``.tsw`` pack (docs/FORMAT.md §2): tensors, tasks and the header that holds them.

Plain frozen dataclasses with their JSON form; the bytes around them are :mod:`.container`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FORMAT_NAME = "tswitch"
FORMAT_VERSION = 2  # the newest version this reader knows (2 added the golomb layout)
METADATA_KEY = "tswitch"


class PackError(ValueError):
    """A pack file is missing, corrupt, truncated, or does not fit the model it is used with."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of the base model that the pack covers."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the base model's dtype, e.g. "float32"

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class TaskEntry:
    """Metadata of one task's switches.

    ``encodings[j]`` is how tensor ``j`` is stored: a layout name (``sass``/``bitmap``) for a
    switch (mask + ``bits``-bit value codes + scale) or ``dense-f16`` for a dense float16 copy.

    Quantised switches (FlexSwitch, journal Eq. 13-15) use ``sass-q``/``bitmap-q``: the same
    layout, with value codes of ``tensor_bits[j]`` bits that index the tensor's codebook (the
    pack's ``t{i}.codebook`` row ``(lo, step)``); ``tensor_bits`` is ``None`` for every other task
    and is then left out of the metadata, so T-Switch packs keep their exact bytes.
    """

    name: str
    alpha: float
    density: float  # measured: kept entries / entries, over switch-encoded tensors
    layout: str
    bits: int
    encodings: tuple[str, ...]
    nnz: tuple[int, ...]
    nbytes: tuple[int, ...]  # payload bytes per tensor
    checksum: str  # "sha256:<hex>" of the payloads in tensor order, then the scales
    labels: tuple[str, ...] | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    tensor_bits: tuple[int, ...] | None = None  # per-tensor value-code width of quantised tasks

    @property
    def widths(self) -> tuple[int, ...]:
        """Bits per kept entry of each tensor: the learned ``tensor_bits`` of a quantised task, else
        ``bits`` for every tensor (the one place this rule is written)."""
        return self.tensor_bits if self.tensor_bits is not None else (self.bits,) * len(self.nnz)

    @property
    def total_bytes(self) -> int:
        """Payload bytes plus 4 bytes of float32 scale per tensor (and, for a quantised task,
        8 bytes of float32 codebook ``(lo, step)`` per tensor)."""
        codebook = CODEBOOK_FIELDS * 4 * len(self.nbytes) if self.tensor_bits is not None else 0
        return int(sum(self.nbytes)) + 4 * len(self.nbytes) + codebook

    def to_dict(self) -> dict[str, Any]:
        """The metadata object of docs/FORMAT.md §2 (``tensor_bits`` only when set)."""
        out = asdict(self)
        if self.tensor_bits is None:
            del out["tensor_bits"]
        return out


@dataclass(frozen=True)
class PackHeader:
    base_fingerprint: str
    tensors: tuple[TensorSpec, ...]
    tasks: tuple[TaskEntry, ...]
    format_version: int = FORMAT_VERSION
    writer: str | None = None  # "tswitch <version>" that wrote the file; stamped by write_pack

    def task_index(self, name: str) -> int:
        for i, task in enumerate(self.tasks):
            if task.name == name:
                return i
        raise PackError(f"unknown task {name!r}; pack has: {', '.join(t.name for t in self.tasks) or '(none)'}")

    @property
    def num_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_NAME,
                "format_version": self.format_version,
                **({"writer": self.writer} if self.writer is not None else {}),
                "base_fingerprint": self.base_fingerprint,
                "tensors": [asdict(t) for t in self.tensors],
                "tasks": [t.to_dict() for t in self.tasks],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> PackHeader:
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
                raise PackError("not a tswitch pack (metadata 'format' is missing)")
            version = int(obj["format_version"])
            if version > FORMAT_VERSION:
                raise PackError(f"pack format version {version} is newer than this tswitch reads ({FORMAT_VERSION})")
            tensors = tuple(
                TensorSpec(t["name"], tuple(int(s) for s in t["shape"]), t["dtype"]) for t in obj["tensors"]
            )
            tasks = tuple(
                TaskEntry(
                    name=t["name"],
                    alpha=float(t["alpha"]),
                    density=float(t["density"]),
                    layout=t["layout"],
                    bits=int(t["bits"]),
                    encodings=tuple(t["encodings"]),
                    nnz=tuple(int(x) for x in t["nnz"]),
                    nbytes=tuple(int(x) for x in t["nbytes"]),
                    checksum=t["checksum"],
                    labels=tuple(t["labels"]) if t.get("labels") is not None else None,
                    extra=dict(t.get("extra") or {}),
                    tensor_bits=tuple(int(b) for b in t["tensor_bits"]) if t.get("tensor_bits") is not None else None,
                )
                for t in obj["tasks"]
            )
            fingerprint = str(obj["base_fingerprint"])
            writer = str(obj["writer"]) if obj.get("writer") is not None else None
        except PackError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PackError(f"corrupt pack metadata ({type(exc).__name__}: {exc})") from None
        for task in tasks:
            if not (len(task.encodings) == len(task.nnz) == len(task.nbytes) == len(tensors)):
                raise PackError(f"corrupt pack metadata: task {task.name!r} does not list every tensor")
            if task.tensor_bits is not None and (
                len(task.tensor_bits) != len(tensors) or any(not 1 <= b <= 16 for b in task.tensor_bits)
            ):
                raise PackError(f"corrupt pack metadata: task {task.name!r} needs one width in [1, 16] per tensor")
        return cls(fingerprint, tensors, tasks, version, writer)


CODEBOOK_FIELDS = 2  # (lo, step) per tensor, float32: level i is lo + (i + 0.5) * step
