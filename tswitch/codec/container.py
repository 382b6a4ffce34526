"""The ``.tsw`` container: many tasks' switch payloads for one base model in one safetensors file.

The byte-level specification is ``docs/FORMAT.md``. This module only moves bytes and metadata:
it never unpickles, reads one task's payload without touching the others' (safetensors is
read lazily through ``safe_open``), and writes atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import replace
from typing import Any

import numpy as np

from .header import (  # noqa: F401 - re-exported: the container's readers and writers speak these
    CODEBOOK_FIELDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_KEY,
    PackError,
    PackHeader,
    TaskEntry,
    TensorSpec,
)


def payload_key(task_index: int, tensor_index: int) -> str:
    return f"t{task_index}.{tensor_index}"


def scales_key(task_index: int) -> str:
    return f"t{task_index}.scales"


def codebook_key(task_index: int) -> str:
    return f"t{task_index}.codebook"


def payload_checksum(payloads: list[bytes], scales: np.ndarray, codebook: np.ndarray | None = None) -> str:
    """SHA-256 of the payloads, then the scales, then (quantised tasks only) the codebook rows."""
    h = hashlib.sha256()
    for p in payloads:
        h.update(p)
    h.update(np.ascontiguousarray(scales, dtype="<f4").tobytes())
    if codebook is not None:
        h.update(np.ascontiguousarray(codebook, dtype="<f4").tobytes())
    return "sha256:" + h.hexdigest()


def _safe_open(path: str) -> Any:
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise PackError(f"pack not found: {path}")
    try:
        return safe_open(path, framework="numpy")
    except Exception as exc:  # safetensors raises its own error type for every malformed file
        raise PackError(f"corrupt or truncated pack {path}: {str(exc).splitlines()[0]}") from None


def read_header(path: str) -> PackHeader:
    """Read only the metadata of a pack (no payload bytes)."""
    with _safe_open(path) as f:
        meta = f.metadata() or {}
    if METADATA_KEY not in meta:
        raise PackError(f"{path} is a safetensors file but not a tswitch pack")
    return PackHeader.from_json(meta[METADATA_KEY])


def read_task_payloads(path: str, header: PackHeader, name: str) -> tuple[list[bytes], np.ndarray]:
    """Read one task's payloads and scales, verifying sizes and the checksum."""
    payloads, scales, _ = read_task(path, header, name)
    return payloads, scales


def read_task(path: str, header: PackHeader, name: str) -> tuple[list[bytes], np.ndarray, np.ndarray | None]:
    """One task's payloads, scales and codebook (``(T, 2)`` float32, or ``None`` for a task
    without quantised tensors), verifying sizes and the checksum."""
    i = header.task_index(name)
    task = header.tasks[i]
    codebook = None
    try:
        with _safe_open(path) as f:
            payloads = [f.get_tensor(payload_key(i, j)).tobytes() for j in range(len(header.tensors))]
            scales: np.ndarray = f.get_tensor(scales_key(i)).astype(np.float32)
            if task.tensor_bits is not None:
                codebook = f.get_tensor(codebook_key(i)).astype(np.float32)
    except PackError:
        raise
    except Exception as exc:
        raise PackError(f"corrupt pack {path}: {str(exc).splitlines()[0]}") from None
    sizes = tuple(len(p) for p in payloads)
    if sizes != task.nbytes or scales.shape != (len(header.tensors),):
        raise PackError(f"corrupt pack {path}: payload sizes of task {name!r} do not match its metadata")
    if codebook is not None and codebook.shape != (len(header.tensors), CODEBOOK_FIELDS):
        raise PackError(f"corrupt pack {path}: codebook of task {name!r} has shape {codebook.shape}")
    if payload_checksum(payloads, scales, codebook) != task.checksum:
        raise PackError(f"corrupt pack {path}: checksum mismatch for task {name!r}")
    return payloads, scales, codebook


def read_task_scales(path: str, header: PackHeader, name: str) -> np.ndarray:
    """One task's float32 scales only (one per tensor), for previews and reports.

    Not verified against the task's checksum, which covers every payload: use
    :func:`read_task_payloads` to decode switches for a model."""
    i = header.task_index(name)
    try:
        with _safe_open(path) as f:
            scales: np.ndarray = f.get_tensor(scales_key(i)).astype(np.float32)
    except PackError:
        raise
    except Exception as exc:
        raise PackError(f"corrupt pack {path}: {str(exc).splitlines()[0]}") from None
    if scales.shape != (len(header.tensors),):
        raise PackError(
            f"corrupt pack {path}: task {name!r} has {scales.shape} scales for {len(header.tensors)} tensors"
        )
    return scales


def read_tensor_payload(
    path: str, header: PackHeader, name: str, tensor: int
) -> tuple[bytes, float, np.ndarray | None]:
    """One task's payload, scale and codebook row ``(lo, step)`` (``None`` unless the task is
    quantised) for tensor index ``tensor``, without reading the other tensors.

    For previews: the size is checked against the metadata, the task checksum is not (it covers
    every payload)."""
    i = header.task_index(name)
    if not 0 <= tensor < len(header.tensors):
        raise PackError(f"tensor index must be in [0, {len(header.tensors)}), got {tensor}")
    codebook = None
    try:
        with _safe_open(path) as f:
            payload = f.get_tensor(payload_key(i, tensor)).tobytes()
            scale = float(f.get_slice(scales_key(i))[tensor : tensor + 1][0])
            if header.tasks[i].tensor_bits is not None:
                codebook = np.asarray(f.get_slice(codebook_key(i))[tensor : tensor + 1], dtype=np.float32)[0]
    except PackError:
        raise
    except Exception as exc:
        raise PackError(f"corrupt pack {path}: {str(exc).splitlines()[0]}") from None
    if len(payload) != header.tasks[i].nbytes[tensor]:
        raise PackError(
            f"corrupt pack {path}: payload size of task {name!r}, tensor {tensor} does not match its metadata"
        )
    return payload, scale, codebook


def _writer() -> str:
    from .. import __version__  # tswitch/__init__.py holds only the version string

    return f"tswitch {__version__}"


STAMP = "stamp"  # write_pack's default writer: "tswitch <this version>"


def write_pack(
    path: str,
    header: PackHeader,
    payloads: list[list[bytes]],
    scales: list[np.ndarray],
    codebooks: list[np.ndarray | None] | None = None,
    writer: str | None = STAMP,
) -> PackHeader:
    """Write a whole pack atomically: ``payloads[i][j]`` is task ``i``'s tensor ``j``;
    ``codebooks[i]`` the ``(T, 2)`` codebook of a quantised task (``None`` otherwise).

    The header's ``writer`` is set to ``writer`` (default: this tswitch's version; ``None`` leaves the
    field out, as files written before it existed). Returns the header as written."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    for i, (task_payloads, task_scales) in enumerate(zip(payloads, scales)):
        for j, p in enumerate(task_payloads):
            tensors[payload_key(i, j)] = np.frombuffer(p, dtype=np.uint8)
        tensors[scales_key(i)] = np.ascontiguousarray(task_scales, dtype=np.float32)
        book = codebooks[i] if codebooks is not None else None
        if (book is None) != (header.tasks[i].tensor_bits is None):
            raise ValueError(f"task {header.tasks[i].name!r}: a codebook goes with tensor_bits, and only with them")
        if book is not None:
            tensors[codebook_key(i)] = np.ascontiguousarray(book, dtype=np.float32).reshape(-1, CODEBOOK_FIELDS)
    header = replace(header, writer=_writer() if writer == STAMP else writer)
    blob = save(tensors, metadata={METADATA_KEY: header.to_json()})
    atomic_write_bytes(path, blob)
    return header


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A new file gets the mode ``open(path, "w")`` would give it (the kernel applies the umask to
    ``os.open``'s 0o666, so the process umask is never read or changed); a replaced file keeps its mode."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
