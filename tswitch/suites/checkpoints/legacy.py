"""Pickled checkpoints (task_vectors' ``torch.save(model)``, ``pytorch_model.bin``), read once, on request.

Unpickling can run arbitrary code, so tswitch refuses pickles unless the caller says
``trust_pickle=True`` (``--trust-pickle``). Even then nothing of the file is executed: the file is
read by ``torch.load(weights_only=True)``, whose unpickler builds only tensors and plain containers;
the classes a whole-model pickle names (``src.modeling.ImageEncoder``, open_clip's modules, torch's
``nn.Linear``) are listed first without running anything
(``torch.serialization.get_unsafe_globals_in_checkpoint``) and replaced by inert stand-ins that only
hold their attributes, from which the parameters and persistent buffers are collected. The tensors
are then written once as safetensors into the cache; later runs read that file.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import torch

from ...io import WeightsError, file_sha256, load_state_dict, save_state_dict

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
REFUSED = (
    "{path} is a pickled checkpoint, and unpickling can run arbitrary code: pass --trust-pickle "
    "(trust_pickle=True) only if you trust where it comes from"
)


def is_pickle(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(PICKLE_SUFFIXES)


class _Stub:
    """An inert stand-in for a pickled object's class: keeps whatever state it is given."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._state = state


def _stub(qualified: str) -> tuple[type, str]:
    module, _, name = qualified.rpartition(".")
    cls = type(name, (_Stub,), {"__module__": module, "__qualname__": name})
    return cls, qualified


def _tensors(obj, prefix: str = "", out: dict | None = None, depth: int = 0) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a (stand-in) module tree, or a (nested) dict of tensors."""
    out = {} if out is None else out
    if depth > 64:
        raise WeightsError("checkpoint nests too deeply")
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj.detach()
    elif isinstance(obj, (dict, OrderedDict)):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and not isinstance(obj[key], torch.Tensor):
                return _tensors(obj[key], prefix, out, depth + 1)
        for key, value in obj.items():
            if isinstance(value, (torch.Tensor, dict, _Stub, torch.nn.Module)):
                _tensors(value, f"{prefix}{key}.", out, depth + 1)
    elif isinstance(obj, torch.nn.Module):
        out.update({f"{prefix}{k}": v.detach() for k, v in obj.state_dict().items()})
    elif isinstance(obj, _Stub) and "_parameters" in obj.__dict__:
        state = obj.__dict__
        skip = set(state.get("_non_persistent_buffers_set", ()))
        for group in ("_parameters", "_buffers"):
            for key, value in (state.get(group) or {}).items():
                if value is not None and key not in skip:
                    out[f"{prefix}{key}"] = value.detach()
        for key, child in (state.get("_modules") or {}).items():
            if child is not None:
                _tensors(child, f"{prefix}{key}.", out, depth + 1)
    return out


def read_pickle(path: str, *, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """Every tensor of a pickled checkpoint (a state dict, or a whole pickled model), by name.

    Raises:
        WeightsError: ``trust_pickle`` is false, or the file holds no tensors / is unreadable.
    """
    if not trust_pickle:
        raise WeightsError(REFUSED.format(path=path))
    from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

    try:
        names = get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) torch files: the unpickler below lists what it refuses
        names = []
    stubs = [_stub(n) for n in names]
    obj = None
    for _ in range(256):  # legacy files: add the refused class, retry
        try:
            with safe_globals(list(stubs)):  # (a copy: stubs grows below)
                obj = torch.load(path, map_location="cpu", weights_only=True)
            break
        except Exception as exc:
            missing = _refused_global(str(exc))
            if missing is None or missing in {q for _, q in stubs}:
                raise WeightsError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0]})") from None
            stubs.append(_stub(missing))
    tensors = _tensors(obj)
    if not tensors:
        raise WeightsError(f"{path}: no tensors found in the checkpoint")
    return {k: v.contiguous() for k, v in tensors.items()}


def _refused_global(message: str) -> str | None:
    import re

    match = re.search(r"GLOBAL ([\w.]+) was not an allowed global", message)
    return match.group(1) if match else None


def converted(path: str, *, trust_pickle: bool, cache_dir: str) -> str:
    """The safetensors copy of a pickled checkpoint in ``cache_dir`` (written on first use).

    The copy is named by the SHA-256 of the pickle's bytes, so an edited file is converted again.
    Once a copy exists it is read without ``trust_pickle``: it is safetensors, not a pickle.
    """
    target = os.path.join(cache_dir, f"{file_sha256(path)[:24]}.safetensors")
    if not os.path.exists(target):
        tensors = read_pickle(path, trust_pickle=trust_pickle)
        os.makedirs(cache_dir, exist_ok=True)
        save_state_dict(tensors, target, metadata={"converted_from": os.path.basename(path)})
    return target


def load_any(path: str, *, trust_pickle: bool, cache_dir: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file/folder, or (with ``trust_pickle``) a pickled file."""
    if is_pickle(path):
        return load_state_dict(converted(path, trust_pickle=trust_pickle, cache_dir=cache_dir))
    return load_state_dict(path)


def convert_hf_folder(folder: str, *, trust_pickle: bool, cache_dir: str) -> str:
    """A Hugging Face folder whose weights are only pickles (``pytorch_model*.bin``), as a cached copy
    with ``model.safetensors`` and the same config / tokenizer files; folders with safetensors
    are returned unchanged."""
    import shutil

    files = sorted(os.listdir(folder))
    if any(f.endswith(".safetensors") for f in files):
        return folder
    pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if not pickles:
        return folder  # let the model loader report what is missing
    if not trust_pickle:
        raise WeightsError(REFUSED.format(path=os.path.join(folder, pickles[0])))
    digest = hashlib.sha256()
    for name in pickles:
        digest.update(name.encode())
        digest.update(str(os.path.getsize(os.path.join(folder, name))).encode())
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    target = os.path.join(cache_dir, f"hf-{digest.hexdigest()[:24]}")
    if not os.path.isdir(target):
        state = {}
        for name in pickles:
            state.update(read_pickle(os.path.join(folder, name), trust_pickle=True))
        tmp = target + ".part"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for name in files:
            if name not in pickles and not name.endswith(".index.json") and os.path.isfile(os.path.join(folder, name)):
                shutil.copyfile(os.path.join(folder, name), os.path.join(tmp, name))
        save_state_dict(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        os.replace(tmp, target)
    return target
