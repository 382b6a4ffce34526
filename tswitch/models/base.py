"""The model-adapter interface: what the router and the dynamic-merge engine need of a backbone.

An adapter wraps one pre-trained backbone (a Hugging Face text encoder, a CLIP vision tower, an
open_clip visual tower, a timm CNN). It exposes

- ``state_dict()``: the pre-trained tensors the switches apply to (parameters *and* buffers, e.g.
  BatchNorm running statistics; non-persistent buffers too, so a forward can be run from this dict
  alone);
- ``preprocess(inputs)``: a list of raw inputs (``str`` for text, ``PIL.Image.Image`` for images) to a
  batch (a dict of tensors, all with the batch as first dimension);
- ``features(batch, weights)``: the backbone's representation before any head, ``(B, D)``, computed
  with the given weights through ``torch.func.functional_call`` (no module is ever mutated; ``None``
  means the pre-trained weights);
- ``bind(weights)``: the same weights in the form cheapest to run many forwards under
  (:class:`BoundWeights` for module adapters); ``features`` takes either;
- ``route_features(batch)``: the representation the Auto-Switch router indexes (pre-trained
  weights). By default the same as ``features``; adapters may offer a cheaper one (e.g. the output of
  the first layers) selected by ``route_layers``.

``torch.func.functional_call`` swaps tensors on the module while it runs, so it is not safe to call
concurrently on one module: adapters run each forward on a replica taken from a small pool.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Head:
    """A task's frozen classification head: ``logits = normalize?(features) @ weight.T + bias``.

    Linear probes (the offline suites) use ``normalize=False``; CLIP zero-shot heads use
    ``normalize=True`` with ``weight`` = logit scale × normalised class embeddings and zero bias.
    A RoBERTa sequence-classification head (``RobertaClassificationHead``: dense, tanh, out_proj on
    the ``<s>`` token) also sets ``dense_weight``/``dense_bias``: then
    ``logits = tanh(features @ dense_weight.T + dense_bias) @ weight.T + bias``.
    """

    weight: torch.Tensor  # (num_classes, D) -- or (num_classes, H) after a hidden layer
    bias: torch.Tensor  # (num_classes,)
    labels: tuple[str, ...]
    normalize: bool = False
    dense_weight: torch.Tensor | None = None  # (H, D): the optional tanh hidden layer
    dense_bias: torch.Tensor | None = None  # (H,)

    def __post_init__(self) -> None:
        if (self.dense_weight is None) != (self.dense_bias is None):
            raise ValueError("dense_weight and dense_bias must be given together")

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            features = torch.nn.functional.normalize(features, dim=-1)
        if self.dense_weight is not None and self.dense_bias is not None:  # (given together)
            features = torch.tanh(
                features @ self.dense_weight.T.to(features.dtype) + self.dense_bias.to(features.dtype)
            )
        return features @ self.weight.T.to(features.dtype) + self.bias.to(features.dtype)

    def extra_tensors(self, task: str) -> dict[str, torch.Tensor]:
        """The hidden layer as ``heads.safetensors`` entries (``"<task>.dense.weight"``...), or ``{}``."""
        if self.dense_weight is None or self.dense_bias is None:  # (given together)
            return {}
        return {f"{task}.dense.weight": self.dense_weight, f"{task}.dense.bias": self.dense_bias}


def structural_copy(module: nn.Module, tensors: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A copy of ``module``'s structure whose parameters and buffers are ``tensors`` by name
    (default: ``module``'s own), not copies. Each tensor is replaced through its identity, so a
    tensor reachable under two names (tied) is replaced under both."""
    import copy

    named = [*module.named_parameters(), *module.named_buffers()]
    memo: dict[int, Any] = {id(t): t if tensors is None else tensors[name] for name, t in named}
    return copy.deepcopy(module, memo)


class ModulePool:
    """Replicas of one module, handed out one per concurrent forward."""

    def __init__(self, module: nn.Module, size: int = 2):
        import copy

        module.eval()
        self._replicas: queue.Queue[nn.Module] = queue.Queue()
        self._replicas.put(module)
        for _ in range(size - 1):
            self._replicas.put(copy.deepcopy(module))

    @classmethod
    def sharing_tensors(cls, module: nn.Module, size: int = 2) -> ModulePool:
        """``size`` structural copies of ``module`` that share its parameter and buffer tensors
        (one copy of the weights; ``module`` itself is not handed out, so it is never swapped).

        Safe for eval-mode forwards, which never write into those tensors (``functional_call`` swaps
        module attributes; it does not copy into parameters).
        """
        pool = cls(structural_copy(module), size=1)
        for _ in range(size - 1):
            pool._replicas.put(structural_copy(module).eval())
        return pool

    @contextmanager
    def acquire(self):
        module = self._replicas.get()
        try:
            yield module
        finally:
            self._replicas.put(module)


class BoundWeights:
    """Weights installed in a structural copy of an adapter's module (``FunctionalAdapter.bind``).

    A forward under them calls that copy directly, without ``functional_call`` swapping every
    tensor on every call (about 1 ms a forward on MiniLM: most of what a batch-1 forward under a
    weight dict costs beyond the plain one). The copy shares the given tensors and is never
    written, so concurrent eval-mode forwards may share it; ``owner`` is the adapter that bound it.
    """

    __slots__ = ("module", "owner")

    def __init__(self, module: nn.Module, owner: ModelAdapter):
        self.module = module
        self.owner = owner


class ModelAdapter:
    """Base class of adapters; subclasses set ``name``/``modality`` and implement the hooks."""

    name: str = ""
    modality: str = ""  # "text" or "image"

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def preprocess(self, inputs: Sequence[Any]) -> Batch:
        raise NotImplementedError

    def features(self, batch: Batch, weights: Mapping[str, torch.Tensor] | BoundWeights | None = None) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor] | BoundWeights:
        """``weights`` in the form cheapest to run many :meth:`features` calls under (default: as given)."""
        return dict(weights)

    def route_features(self, batch: Batch) -> torch.Tensor:
        return self.features(batch, None)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")
