"""Class names and prompt templates of the eight FusionBench / task_vectors image tasks.

Zero-shot heads (CLIP §3.1.4; the papers' heads) are built from these: one prompt per template and
class, mean of the L2-normalised text embeddings, re-normalised, times the logit scale
(:func:`tswitch.models.clip_zero_shot_head`). The templates are those of mlfoundations/task_vectors
(``src/datasets/templates.py``), which FusionBench copies; the class names are FusionBench's
(``fusion_bench/tasks/clip_classification/<task>.py``), in the label order of its datasets
(``tanganke/<task>`` on the Hub), stored in ``classnames.json`` beside this file.
"""

from __future__ import annotations

import json
import os

_DIGITS = tuple(str(d) for d in range(10))


def _load_classnames() -> dict[str, tuple[str, ...]]:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "classnames.json"), encoding="utf-8") as f:
        named = {task: tuple(names) for task, names in json.load(f).items()}
    return {**named, "svhn": _DIGITS, "mnist": _DIGITS}


CLASSNAMES: dict[str, tuple[str, ...]] = _load_classnames()

# One "{}" per template: the class name.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "sun397": ("a photo of a {}.", "a photo of the {}."),
    "stanford-cars": (
        "a photo of a {}.",
        "a photo of the {}.",
        "a photo of my {}.",
        "i love my {}!",
        "a photo of my dirty {}.",
        "a photo of my clean {}.",
        "a photo of my new {}.",
        "a photo of my old {}.",
    ),
    "resisc45": tuple(
        f"{kind} {view} of {art}{{}}."
        for art in ("", "a ", "the ")
        for kind, view in (
            ("satellite", "imagery"),
            ("aerial", "imagery"),
            ("satellite", "photo"),
            ("aerial", "photo"),
            ("satellite", "view"),
            ("aerial", "view"),
        )
    ),
    "eurosat": (
        "a centered satellite photo of {}.",
        "a centered satellite photo of a {}.",
        "a centered satellite photo of the {}.",
    ),
    "svhn": ('a photo of the number: "{}".',),
    "gtsrb": (
        'a zoomed in photo of a "{}" traffic sign.',
        'a centered photo of a "{}" traffic sign.',
        'a close up photo of a "{}" traffic sign.',
    ),
    "mnist": ('a photo of the number: "{}".',),
    "dtd": tuple(
        f"a photo of {art} {{}} {what}." for art in ("a", "the") for what in ("texture", "pattern", "thing", "object")
    ),
}

# Any other task: CLIP's plain prompt.
DEFAULT_TEMPLATES = ("a photo of a {}.",)


def templates_for(task: str) -> tuple[str, ...]:
    """The task's prompt templates (task_vectors / FusionBench), or ``DEFAULT_TEMPLATES``."""
    return TEMPLATES.get(task, DEFAULT_TEMPLATES)


def classnames_for(task: str, num_classes: int) -> tuple[str, ...] | None:
    """FusionBench's class names of ``task`` if it has exactly ``num_classes`` of them, else ``None``."""
    names = CLASSNAMES.get(task)
    return names if names is not None and len(names) == num_classes else None
