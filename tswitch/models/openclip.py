"""open_clip visual towers (``open_clip.create_model(...).visual``), the checkpoints of the papers'
original task-vector code (mlfoundations/task_vectors fine-tunes open_clip ViT-B/32)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from .base import Batch
from .common import FunctionalAdapter, pil_batch, require, resolve_source
from .registry import register_adapter


@register_adapter("open-clip")
class OpenCLIPVisualAdapter(FunctionalAdapter):
    """The image tower of an open_clip model; features are its projected embedding (pre-normalisation).

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``, e.g. ``"ViT-B-32"``), or
            one registered with ``open_clip.add_model_config``.
        pretrained: a checkpoint file of the whole CLIP model (``.safetensors`` or a ``torch.save``
            state dict), an open_clip tag (needs the network), or ``None`` for random weights.
        device: where the forwards run.
        pool_size: concurrent forwards.
    """

    modality = "image"

    def __init__(self, model_name: str, pretrained: str | Path | None = None, device: str = "cpu", pool_size: int = 2):
        open_clip = require("open_clip")
        if pretrained is not None:
            pretrained = str(resolve_source(pretrained, allow_hub_id=True))
        # pretrained_text=False: never fetch a text tower's base weights; only the visual tower is kept.
        model = open_clip.create_model(model_name, pretrained=pretrained, pretrained_text=False)
        visual = model.visual
        from open_clip.transform import PreprocessCfg, image_transform_v2

        cfg = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
        self._transform = image_transform_v2(cfg, is_train=False)
        sides = (cfg.size, cfg.size) if isinstance(cfg.size, int) else tuple(cfg.size)
        self.image_size = sides[0] if sides[0] == sides[1] else sides
        # open_clip's default evaluation transform (square, shortest side, bicubic) is exactly
        # pil_batch's, which is much faster.
        self._fast = cfg.resize_mode == "shortest" and cfg.interpolation == "bicubic" and sides[0] == sides[1]
        self._mean, self._std = tuple(cfg.mean), tuple(cfg.std)
        super().__init__(visual, device=device, pool_size=pool_size)
        self.feature_dim = int(visual.output_dim)

    def preprocess(self, inputs: Sequence[Any]) -> Batch:
        """PIL images to ``{"pixel_values": (B, 3, S, S)}`` with open_clip's evaluation transform."""
        if len(inputs) == 0:
            raise ValueError("inputs must not be empty")
        if self._fast:
            # _fast implies a square size: image_size is one int
            return {"pixel_values": pil_batch(inputs, cast(int, self.image_size), self._mean, self._std)}
        return {"pixel_values": torch.stack([self._transform(image.convert("RGB")) for image in inputs])}

    def _call_args(self, batch: Batch) -> tuple[tuple, dict]:
        return (batch["pixel_values"],), {}

    def _select(self, output: Any, batch: Batch) -> torch.Tensor:
        return output[0] if isinstance(output, tuple) else output  # (B, embed_dim)
