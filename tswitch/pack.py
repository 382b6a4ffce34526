"""Switch packs: compress task vectors into a ``.tsw`` file and read them back.

Ties :mod:`tswitch.core` (B-Approx, Eq. 5-7) to :mod:`tswitch.codec` (layouts, container):
each floating tensor of a task vector is stored as a T-Switch (mask + polarity bits + float32
scale) in the pack's layout, or, when its name matches the opt-in ``dense_pattern``, as a dense
float16 copy of the task vector. FlexSwitch tasks (:mod:`tswitch.flex.storage`) add quantised
switches, ``sass-q``/``bitmap-q``: the layout's mask with ``b``-bit codebook indices as value codes,
decoded to :class:`tswitch.core.quant.QSwitch`.

Length: one module on purpose — encoding, decoding, creating, extending and repacking are the two
directions of one byte mapping (docs/FORMAT.md §3); split, the format would live in several places.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .codec import container
from .codec.header import PackError, PackHeader, TaskEntry, TensorSpec
from .codec.layouts import AUTO, LAYOUTS, check_layout_choice, choose_layout, get_layout
from .core.binary import TSwitch, b_approx_codes, from_codes
from .core.pspar import validate_alpha
from .core.quant import Codebook, QSwitch
from .core.task_vector import TaskVector, is_task_tensor

DENSE = "dense-f16"
# quantised switches (journal Eq. 13-15): encoding -> the layout that carries mask and codes
QUANTISED = {f"{name}-q": name for name in LAYOUTS}
POLARITY_BITS = 1  # T-Switch stores one sign bit per kept entry
_THREADS = max(1, min(4, os.cpu_count() or 1))


def base_fingerprint(state: Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> str:
    """SHA-256 of the base model's tensors: per name in sorted order, the UTF-8 name, a NUL,
    the JSON ``[dtype, shape]``, a NUL, then the little-endian float32 values (docs/FORMAT.md)."""
    h = hashlib.sha256()
    for name in sorted(names if names is not None else state):
        t = state[name]
        h.update(name.encode() + b"\0")
        h.update(json.dumps([str(t.dtype).replace("torch.", ""), list(t.shape)]).encode() + b"\0")
        values = np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype="<f4").reshape(-1)
        h.update(values.view(np.uint8).data)  # 1-D: memoryview.cast refuses zero-size N-d arrays
    return "sha256:" + h.hexdigest()


def tensor_specs(pretrained: Mapping[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    """The floating tensors of a base model, in its own order."""
    return tuple(
        TensorSpec(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))
        for k, v in pretrained.items()
        if is_task_tensor(v)
    )


@dataclass(frozen=True)
class EncodedTask:
    entry: TaskEntry
    payloads: list[bytes]
    scales: np.ndarray
    tensor_names: tuple[str, ...]  # the order the payloads follow
    codebook: np.ndarray | None = None  # (T, 2) float32 (lo, step) of a quantised task


def encode_dense(t: torch.Tensor) -> bytes:
    """A ``dense-f16`` payload (docs/FORMAT.md §3.3): the tensor as little-endian float16."""
    return t.detach().cpu().to(torch.float16).contiguous().numpy().astype("<f2", copy=False).tobytes()


def _check_order(task: EncodedTask, specs: Sequence[TensorSpec]) -> None:
    if task.tensor_names != tuple(s.name for s in specs):
        raise ValueError(f"task {task.entry.name!r} was encoded for another tensor list or order")


def encode_task(
    name: str,
    tau: TaskVector,
    specs: Sequence[TensorSpec],
    alpha: float,
    layout: str = AUTO,
    dense_pattern: str | None = None,
    labels: Sequence[str] | None = None,
) -> EncodedTask:
    """Compress one task vector: B-Approx per tensor (T-Switch Eq. 5-7), then the layout's bytes
    (``"auto"``: per tensor the smallest layout, docs/FORMAT.md §3)."""
    alpha = validate_alpha(alpha)
    check_layout_choice(layout)
    dense_re = re.compile(dense_pattern) if dense_pattern else None
    if not name or not isinstance(name, str):
        raise ValueError("task name must be a non-empty string")

    def one(spec: TensorSpec) -> tuple[str, bytes, float, int]:
        try:
            t = tau[spec.name]
        except KeyError:
            raise ValueError(f"task vector {name!r} lacks tensor {spec.name}") from None
        if tuple(t.shape) != spec.shape:
            raise ValueError(f"shape mismatch for {spec.name}: {tuple(t.shape)} vs {spec.shape}")
        if dense_re is not None and dense_re.search(spec.name):
            return DENSE, encode_dense(t), 1.0, t.numel()
        mask, kept_positive, scale = b_approx_codes(t, alpha)
        flat = mask.numpy().reshape(-1)
        lay = choose_layout(flat, POLARITY_BITS, layout)
        return lay.name, lay.encode(flat, kept_positive.numpy(), POLARITY_BITS), scale, int(kept_positive.numel())

    with ThreadPoolExecutor(_THREADS) as pool:  # numpy/torch release the GIL on large arrays
        results = list(pool.map(one, specs))
    encodings = tuple(r[0] for r in results)
    payloads = [r[1] for r in results]
    scales = np.array([r[2] for r in results], dtype=np.float32)
    nnz = tuple(r[3] for r in results)
    switched = [j for j, e in enumerate(encodings) if e != DENSE]
    n_switched = sum(specs[j].numel for j in switched)
    density = sum(nnz[j] for j in switched) / n_switched if n_switched else 0.0
    entry = TaskEntry(
        name=name,
        alpha=alpha,
        density=density,
        layout=layout,
        bits=POLARITY_BITS,
        encodings=encodings,
        nnz=nnz,
        nbytes=tuple(len(p) for p in payloads),
        checksum=container.payload_checksum(payloads, scales),
        labels=tuple(labels) if labels is not None else None,
    )
    return EncodedTask(entry, payloads, scales, tuple(s.name for s in specs))


def _codebook(spec: TensorSpec, bits: int, codebook: np.ndarray | None) -> Codebook:
    if codebook is None:
        raise PackError(f"corrupt pack: quantised tensor {spec.name} has no codebook")
    try:
        return Codebook(int(bits), float(codebook[0]), float(codebook[1]))
    except ValueError as exc:
        raise PackError(f"corrupt pack: {spec.name}: {exc}") from None


def _decode_codes(
    payload: bytes, spec: TensorSpec, encoding: str, bits: int, nnz: int | None, positions: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The layout's ``(mask or kept positions, value codes)``, checked against the metadata's ``nnz``."""
    layout = get_layout(QUANTISED.get(encoding, encoding))
    try:
        where, values = (layout.decode_positions if positions else layout.decode)(payload, spec.numel, bits)
    except ValueError as exc:
        raise PackError(f"{spec.name}: {exc}") from None
    if nnz is not None and values.size != nnz:
        raise PackError(f"corrupt pack: {spec.name} holds {values.size} kept entries, metadata says {nnz}")
    return where, values


def decode_tensor(
    payload: bytes,
    spec: TensorSpec,
    encoding: str,
    bits: int,
    scale: float,
    nnz: int | None = None,
    codebook: np.ndarray | None = None,
) -> TSwitch | QSwitch | torch.Tensor:
    """One stored tensor back: a :class:`TSwitch`, a :class:`QSwitch` (quantised encodings, which
    need the tensor's ``codebook`` row ``(lo, step)``) or a float32 tensor for ``dense-f16``.

    ``nnz``, when given, is the kept count the metadata promises; a payload disagreeing with it
    is corrupt."""
    if encoding == DENSE:
        return _decode_f16(payload, spec)
    mask, values = _decode_codes(payload, spec, encoding, bits, nnz, positions=False)
    if encoding in QUANTISED:
        return QSwitch(
            torch.from_numpy(mask).view(spec.shape),
            torch.from_numpy(values.astype(np.int64)),
            _codebook(spec, bits, codebook),
            float(scale),
        )
    return from_codes(spec.shape, torch.from_numpy(mask), torch.from_numpy(values.astype(np.bool_)), scale)


def _decode_f16(payload: bytes, spec: TensorSpec) -> torch.Tensor:
    if len(payload) != 2 * spec.numel:
        raise PackError(f"corrupt dense payload for {spec.name}")
    return torch.from_numpy(np.frombuffer(payload, dtype="<f2").astype(np.float32)).view(spec.shape)


def decode_dense(
    payload: bytes,
    spec: TensorSpec,
    encoding: str,
    bits: int,
    scale: float,
    nnz: int | None = None,
    codebook: np.ndarray | None = None,
) -> torch.Tensor:
    """One stored tensor straight to its dense float32 task-vector approximation
    (``scale · mask ⊙ sign``, T-Switch Eq. 7; ``scale · (lo + (code + 0.5) step)`` at kept entries
    for a quantised switch) without building a bool mask."""
    if encoding == DENSE:
        return _decode_f16(payload, spec)
    positions, values = _decode_codes(payload, spec, encoding, bits, nnz, positions=True)
    out = np.zeros(spec.numel, dtype=np.float32)
    if encoding in QUANTISED:
        book = _codebook(spec, bits, codebook)
        out[positions] = (float(scale) * book.levels(torch.from_numpy(values.astype(np.int64)))).numpy()
    else:
        out[positions] = np.where(values.astype(np.bool_), np.float32(scale), np.float32(-scale))
    return torch.from_numpy(out).view(spec.shape)


def _task_jobs(pack: SwitchPack, name: str) -> list[tuple[Any, ...]]:
    """Per tensor ``(payload, spec, encoding, bits, scale, nnz, codebook row)`` of one task."""
    entry = pack.task(name)
    payloads, scales, codebook = container.read_task(pack.path, pack.header, name)
    rows = list(codebook) if codebook is not None else [None] * len(pack.header.tensors)
    return list(zip(payloads, pack.header.tensors, entry.encodings, entry.widths, scales, entry.nnz, rows))


class SwitchPack:
    """A lazily read ``.tsw`` pack: the header at open, one task's payload on demand."""

    def __init__(self, path: str):
        self.path = path
        self.header: PackHeader = container.read_header(path)

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.header.tasks]

    def task(self, name: str) -> TaskEntry:
        return self.header.tasks[self.header.task_index(name)]

    def encoded(self, name: str) -> EncodedTask:
        """Task ``name`` as stored (checksum verified), ready for :func:`create_pack` or :func:`add_task`."""
        payloads, scales, codebook = container.read_task(self.path, self.header, name)
        names = tuple(s.name for s in self.header.tensors)
        return EncodedTask(self.task(name), payloads, scales, names, codebook)

    def check_base(self, pretrained: Mapping[str, torch.Tensor]) -> None:
        """Raise :class:`PackError` unless ``pretrained`` is the base model the pack was made for."""
        names = [s.name for s in self.header.tensors]
        missing = [n for n in names if n not in pretrained]
        if missing:
            raise PackError(f"pack was made for another base model: it lacks {missing[:3]}")
        for s in self.header.tensors:
            if tuple(pretrained[s.name].shape) != s.shape:
                raise PackError(
                    f"pack was made for another base model: {s.name} has shape "
                    f"{tuple(pretrained[s.name].shape)}, pack expects {s.shape}"
                )
        if base_fingerprint(pretrained, names) != self.header.base_fingerprint:
            raise PackError("pack was made for another base model (fingerprint mismatch)")

    def load_task(self, name: str) -> dict[str, object]:
        """Decode one task: name -> :class:`TSwitch` (:class:`QSwitch` for quantised entries,
        a float32 tensor for dense ones)."""
        jobs = _task_jobs(self, name)
        with ThreadPoolExecutor(_THREADS) as pool:
            items = list(pool.map(lambda a: decode_tensor(a[0], a[1], a[2], a[3], float(a[4]), a[5], a[6]), jobs))
        return {spec.name: item for spec, item in zip(self.header.tensors, items)}

    def task_vector(self, name: str) -> TaskVector:
        """The reconstructed task vector ``scale · mask ⊙ sign`` of one task (float32)."""
        jobs = _task_jobs(self, name)
        with ThreadPoolExecutor(_THREADS) as pool:
            dense = list(pool.map(lambda a: decode_dense(a[0], a[1], a[2], a[3], float(a[4]), a[5], a[6]), jobs))
        return TaskVector({spec.name: t for spec, t in zip(self.header.tensors, dense)})


def format_version(entries: Sequence[TaskEntry]) -> int:
    """The lowest ``.tsw`` format version that holds every encoding of ``entries``, so that packs
    without the newer layouts stay readable by older readers (docs/FORMAT.md §2)."""
    needed = [get_layout(QUANTISED.get(e, e)).min_version for t in entries for e in t.encodings if e != DENSE]
    return max(needed, default=1)


def _header(fingerprint: str, specs: Sequence[TensorSpec], entries: Sequence[TaskEntry]) -> PackHeader:
    return PackHeader(fingerprint, tuple(specs), tuple(entries), format_version(entries))


def create_pack(
    path: str,
    pretrained: Mapping[str, torch.Tensor],
    tasks: Sequence[EncodedTask],
    writer: str | None = container.STAMP,
) -> PackHeader:
    """Write a new pack holding ``tasks`` for the base model ``pretrained`` (atomic); ``writer`` is the
    header's writer field (default ``"tswitch <version>"``, see :func:`tswitch.codec.container.write_pack`)."""
    specs = tensor_specs(pretrained)
    names = [t.entry.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate task names: {names}")
    for t in tasks:
        _check_order(t, specs)
    header = _header(base_fingerprint(pretrained, [s.name for s in specs]), specs, [t.entry for t in tasks])
    return container.write_pack(
        path, header, [t.payloads for t in tasks], [t.scales for t in tasks], [t.codebook for t in tasks], writer
    )


def add_task(path: str, pretrained: Mapping[str, torch.Tensor], task: EncodedTask) -> PackHeader:
    """Rewrite ``path`` with one more task (verifies the base model; atomic)."""
    pack = SwitchPack(path)
    pack.check_base(pretrained)
    _check_order(task, pack.header.tensors)
    if task.entry.name in pack.tasks:
        raise ValueError(f"task {task.entry.name!r} is already in {path}")
    old = [container.read_task(path, pack.header, t.name) for t in pack.header.tasks]
    header = _header(pack.header.base_fingerprint, pack.header.tensors, pack.header.tasks + (task.entry,))
    return container.write_pack(
        path,
        header,
        [p for p, _, _ in old] + [task.payloads],
        [s for _, s, _ in old] + [task.scales],
        [c for _, _, c in old] + [task.codebook],
    )


def add_tasks_from(path: str, source: str, names: Sequence[str] | None = None) -> PackHeader:
    """Rewrite ``path`` with the tasks ``names`` (default: all) of the pack ``source``, copied as stored.

    Both packs must be for the same base model and tensor list (equal fingerprints prove the base, so
    no weights are needed); each copied task keeps its checksum, which is verified on read. Atomic.
    """
    pack, other = SwitchPack(path), SwitchPack(source)
    if other.header.base_fingerprint != pack.header.base_fingerprint or other.header.tensors != pack.header.tensors:
        raise PackError(f"{source} was made for another base model or tensor list than {path}")
    names = list(other.tasks if names is None else names)
    for name in names:
        other.task(name)  # unknown names fail before anything is written
    clash = [n for n in names if n in pack.tasks]
    if clash or len(set(names)) != len(names):
        raise ValueError(f"task(s) {clash or names} already in {path} (or named twice)")
    old = [container.read_task(path, pack.header, t.name) for t in pack.header.tasks]
    new = [container.read_task(source, other.header, n) for n in names]
    entries = pack.header.tasks + tuple(other.task(n) for n in names)
    rows = old + new
    return container.write_pack(
        path,
        _header(pack.header.base_fingerprint, pack.header.tensors, entries),
        [p for p, _, _ in rows],
        [s for _, s, _ in rows],
        [c for _, _, c in rows],
    )


def _relayout(payload: bytes, spec: TensorSpec, encoding: str, bits: int, nnz: int, layout: str) -> tuple[str, bytes]:
    """One stored tensor re-encoded in ``layout`` (``"auto"``: the smallest), bit-exact in content."""
    if encoding == DENSE:
        return encoding, payload
    mask, values = _decode_codes(payload, spec, encoding, bits, nnz, positions=False)
    lay = choose_layout(mask, bits, layout)
    return (f"{lay.name}-q" if encoding in QUANTISED else lay.name), lay.encode(mask, values, bits)


def repack(path: str, out: str | None = None, layout: str = AUTO) -> PackHeader:
    """Rewrite every switch of a pack in another layout (default: per tensor the smallest), losslessly:
    masks, value codes, scales and codebooks are unchanged, only their bytes. Writes ``out`` (default:
    ``path`` itself) atomically; each task's checksum is verified on read and recomputed on write."""
    check_layout_choice(layout)
    pack = SwitchPack(path)
    entries, payloads, scales, books = [], [], [], []
    for entry in pack.header.tasks:
        old, task_scales, book = container.read_task(path, pack.header, entry.name)
        jobs = zip(old, pack.header.tensors, entry.encodings, entry.widths, entry.nnz)
        with ThreadPoolExecutor(_THREADS) as pool:
            rows = list(pool.map(lambda a: _relayout(a[0], a[1], a[2], a[3], a[4], layout), jobs))
        new = [p for _, p in rows]
        entries.append(
            replace(
                entry,
                layout=layout,
                encodings=tuple(e for e, _ in rows),
                nbytes=tuple(len(p) for p in new),
                checksum=container.payload_checksum(new, task_scales, book),
            )
        )
        payloads.append(new)
        scales.append(task_scales)
        books.append(book)
    header = _header(pack.header.base_fingerprint, pack.header.tensors, entries)
    return container.write_pack(out or path, header, payloads, scales, books)
