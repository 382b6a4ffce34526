"""Model families of real-checkpoint suites: how a family reads a fine-tune and builds a task's head.

``clip``: a CLIP base (``CLIPModel``, whose text tower makes the zero-shot heads) and fine-tuned
vision towers (``CLIPVisionModel`` -- FusionBench's ``tanganke/clip-vit-*_<task>`` -- or full
``CLIPModel`` checkpoints). The vision tower is merged; a fine-tune without ``visual_projection``
(FusionBench fine-tunes only ``vision_model``) keeps the base's, i.e. a zero task vector there.

``roberta``: a RoBERTa base (``roberta-base``) and ``RobertaForSequenceClassification`` fine-tunes
(GLUE). The encoder is merged; each task keeps its own classification head
(``classifier.dense`` + tanh + ``classifier.out_proj`` on the ``<s>`` token), frozen, exactly as
fine-tuned -- the papers' protocol for GLUE (heads are task-specific and never merged).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...models import clip_zero_shot_head
from ...models.base import Head
from ...models.common import require, resolve_source, tensors_of
from .legacy import convert_hf_folder, is_pickle, load_any
from .zeroshot import classnames_for, templates_for

# --model of demos/build_clip_suite.py: the base and FusionBench's fine-tunes ("{task}" = task name).
CLIP_MODELS = {
    "ViT-B-32": ("openai/clip-vit-base-patch32", "tanganke/clip-vit-base-patch32_{task}"),
    "ViT-B-16": ("openai/clip-vit-base-patch16", "tanganke/clip-vit-base-patch16_{task}"),
    "ViT-L-14": ("openai/clip-vit-large-patch14", "tanganke/clip-vit-large-patch14_{task}"),
}
CLIP_TASKS = ("sun397", "stanford-cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd")


class CheckpointError(ValueError):
    """A given checkpoint is missing, unreadable, or does not fit the base."""


def local_or_hub(source: str, *, trust_pickle: bool, cache_dir: str) -> str:
    """A checkpoint source ready for ``from_pretrained``: a local folder (pickled weights converted
    to a cached safetensors copy, with ``trust_pickle``) or a Hub id (transformers fetches it)."""
    try:
        resolved = str(resolve_source(source, allow_hub_id=True))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {source} (a Hugging Face folder or a Hub id)") from None
    if os.path.isdir(resolved):
        return convert_hf_folder(resolved, trust_pickle=trust_pickle, cache_dir=cache_dir)
    if os.path.isfile(resolved) and not is_pickle(resolved) and not resolved.endswith(".safetensors"):
        raise CheckpointError(f"{source}: not a model folder, .safetensors file or pickled checkpoint")
    return resolved


def align(finetuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The fine-tune's tensors under the base's names, checked against the base's shapes.

    Names may carry a prefix the base lacks (task_vectors' ``model.visual.``, ``module.``) or lack
    one the base has (transformers 5's ``CLIPVisionModel`` names its tensors without
    ``vision_model.``): the rule matching the most base names is used. Base tensors absent from the fine-tune are
    taken from the base (zero task vector); a fine-tune that matches no base tensor, or any
    shape mismatch, is an error.
    """

    def prefixes(keys):
        return {""} | {k[: i + 1] for k in keys for i, c in enumerate(k) if c == "." and k[:i].count(".") < 3}

    # base name k is the fine-tune's p + k (p: a prefix of the fine-tune), or q + (its name) (q: of the base)
    rules = [(p, "") for p in sorted(prefixes(finetuned))] + [("", q) for q in sorted(prefixes(base)) if q]

    def name(rule, k):
        p, q = rule
        return p + k[len(q) :] if k.startswith(q) else None

    best = max(rules, key=lambda rule: sum(1 for k in base if name(rule, k) in finetuned))
    out = {k: finetuned[name(best, k)] for k in base if name(best, k) in finetuned}
    floating = [k for k, v in base.items() if torch.is_floating_point(v)]
    if not any(k in out for k in floating):
        raise CheckpointError(
            f"{source}: no tensor of the fine-tune matches the base (e.g. base "
            f"{floating[0]!r}, fine-tune {next(iter(finetuned))!r})"
        )
    for k, v in out.items():
        if tuple(v.shape) != tuple(base[k].shape):
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(v.shape)}, the base has "
                f"{tuple(base[k].shape)} (not a fine-tune of this base)"
            )
    return {k: v.to(base[k].dtype) for k, v in out.items()}


@dataclass(frozen=True)
class Family:
    """What differs between model families; everything else is the shared suite builder."""

    name: str
    modality: str
    adapter: str
    adapter_args: Callable[[str], dict]  # base source -> adapter keyword arguments
    load_finetuned: Callable[..., tuple[dict[str, torch.Tensor], object]]  # -> (tensors, family extra)
    make_head: Callable[..., Head]


# -- CLIP ------------------------------------------------------------------------------------------
def _clip_finetuned(source: str, base: dict[str, torch.Tensor], *, trust_pickle: bool, cache_dir: str):
    if os.path.isfile(source) and (is_pickle(source) or source.endswith(".safetensors")):
        return align(load_any(source, trust_pickle=trust_pickle, cache_dir=cache_dir), base, source), None
    from ...models.hf_clip import load_vision_tower

    transformers = require("transformers")
    path = local_or_hub(source, trust_pickle=trust_pickle, cache_dir=cache_dir)
    try:
        module, _ = load_vision_tower(transformers, path)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: not a CLIP vision checkpoint ({str(exc).splitlines()[0]})") from None
    return align(tensors_of(module), base, source), None


class ClipText:
    """The base's text tower and tokenizer, loaded once, for every task's zero-shot head."""

    def __init__(self, source: str, device: str = "cpu"):
        transformers = require("transformers")
        try:
            self.model = transformers.CLIPModel.from_pretrained(source).eval()
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: no CLIP text tower / tokenizer for the zero-shot heads "
                f"({str(exc).splitlines()[0]}); give --text-model"
            ) from None
        self.device = device


def _clip_head(task: str, label_names, extra, text: ClipText) -> Head:
    names = classnames_for(task, len(label_names)) or tuple(label_names)
    return clip_zero_shot_head(text.model, names, templates_for(task), tokenizer=text.tokenizer, device=text.device)


# -- RoBERTa ----------------------------------------------------------------------------------------
def _text_finetuned(source: str, base: dict[str, torch.Tensor], *, trust_pickle: bool, cache_dir: str):
    transformers = require("transformers")
    path = local_or_hub(source, trust_pickle=trust_pickle, cache_dir=cache_dir)
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{source}: not a sequence-classification checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    classifier = getattr(model, "classifier", None)
    if classifier is None or not hasattr(classifier, "dense") or not hasattr(classifier, "out_proj"):
        raise CheckpointError(
            f"{source}: expected a RoBERTa-style head (classifier.dense, classifier.out_proj), "
            f"got {type(model).__name__}"
        )
    head = {
        k: v.detach().float().clone()
        for k, v in (
            ("dense_weight", classifier.dense.weight),
            ("dense_bias", classifier.dense.bias),
            ("weight", classifier.out_proj.weight),
            ("bias", classifier.out_proj.bias),
        )
    }
    return align(tensors_of(model.base_model), base, source), head


def _text_head(task: str, label_names, extra, text=None) -> Head:
    if extra["weight"].shape[0] != len(label_names):
        raise CheckpointError(
            f"task {task}: the fine-tune's head has {extra['weight'].shape[0]} classes, the data {len(label_names)}"
        )
    return Head(labels=tuple(label_names), **extra)


FAMILIES = {
    "clip": Family("clip", "image", "hf-clip-vision", lambda base: {"source": base}, _clip_finetuned, _clip_head),
    # the classifier reads the <s> token of the last layer: "cls" pooling
    "roberta": Family(
        "roberta",
        "text",
        "hf-text",
        lambda base: {"source": base, "max_length": 128, "pooling": "cls"},
        _text_finetuned,
        _text_head,
    ),
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; valid: {', '.join(sorted(FAMILIES))}") from None
