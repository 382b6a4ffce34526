"""Loading and saving model weights: safetensors only (no pickle).

A ``PATH`` is a ``.safetensors`` file or a Hugging Face model folder holding ``config.json`` and one
or more ``*.safetensors`` shards (``model.safetensors`` or ``model-00001-of-0000N.safetensors`` with an
index). Pickled checkpoints are refused here; see the real-checkpoint builders for the explicit,
opt-in legacy path.
"""

from __future__ import annotations

import glob
import hashlib
import os

import torch

from .codec.container import atomic_write_bytes


class WeightsError(ValueError):
    """Weights are missing, unreadable or in a format tswitch refuses to read."""


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(path: str) -> list[str]:
    """The safetensors files that make up ``path`` (a file or a model folder)."""
    if os.path.isfile(path):
        if not path.endswith(".safetensors"):
            raise WeightsError(f"{path}: only .safetensors weights are read (pickled checkpoints are refused)")
        return [path]
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise WeightsError(f"{path}: folder holds no *.safetensors weights")
        return files
    raise WeightsError(f"weights not found: {path}")


def load_state_dict(path: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load every tensor of a safetensors file or model folder (shards merged)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        try:
            part = load_file(file, device=device)
        except Exception as exc:
            raise WeightsError(f"{file}: unreadable safetensors file ({str(exc).splitlines()[0]})") from None
        overlap = set(state) & set(part)
        if overlap:
            raise WeightsError(f"{file}: tensors repeated across shards: {sorted(overlap)[:3]}")
        state.update(part)
    return state


def save_state_dict(state: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as one safetensors file, atomically (no partial file on failure)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
