"""One safetensors file per router: named tensors plus a JSON ``"tswitch_router"`` metadata object holding a
format tag, a version and the router's settings. Shared by :class:`tswitch.routing.KNNRouter` and
:class:`tswitch.routing.low_rank.LowRankRouter`, which differ only in their tag, tensors and settings.
"""

from __future__ import annotations

import json
import os

import torch

METADATA_KEY = "tswitch_router"


def save_router(path: str, tensors: dict[str, torch.Tensor], tag: str, version: int, settings: dict) -> None:
    """Write ``tensors`` and ``{"format": tag, "version": version, **settings}`` atomically."""
    from safetensors.torch import save

    from ..codec.container import atomic_write_bytes

    meta = json.dumps({"format": tag, "version": version, **settings})
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata={METADATA_KEY: meta}))


def load_router(path: str, tag: str, version: int, names: tuple[str, ...], build, what: str = "router"):
    """Read a file of :func:`save_router` and return ``build(tensors, settings)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a valid ``tag`` file, a newer version, or ``build`` refused it (one line).
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"router file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            tensors = {name: f.get_tensor(name) for name in names}
        if meta.get("format") != tag:
            raise ValueError("wrong format tag")
        if int(meta["version"]) > version:
            raise ValueError(f"version {meta['version']} is newer than this tswitch reads ({version})")
        return build(tensors, meta)
    except Exception as exc:  # safetensors, json, build and our own checks each raise their own type
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"corrupt or invalid {what} file {path}: {reason}") from None
