"""How a task is taught (:class:`TeachConfig`) and the constants of the run, without torch: the page
imports these when it is built, before any model is loaded (``tests/test_app.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .data import TeachError

# Prompt templates the head may use, chosen per task on the training lines (PROTOCOL.md: "templates
# chosen once, on train/validation data only"): the bare name, a topic phrasing, a kind phrasing.
TEMPLATE_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("{}",),
    ("a message about {}.", "this is about {}.", "a sentence on the topic of {}."),
    ("a {} message.", "this is {}.", "a sentence in {}."),
)
# The recipe a suite without one uses: PROTOCOL.md's text pilot (AdamW, lr 5e-5, batch 16, 200 steps).
DEFAULT_RECIPE = {"steps": 200, "batch_size": 16, "lr": 5e-5, "weight_decay": 0.0, "train_bn": True}

Progress = Callable[[str, float, dict], object]  # (phase, fraction of the whole run, details)


class TeachCancelled(TeachError):
    """The visitor cancelled the run; nothing was kept."""


@dataclass(frozen=True)
class TeachConfig:
    """How a task is taught; defaults fit a 2-core CPU Space.

    Attributes:
        time_cap: seconds the fine-tune may run (the whole run adds ~15-30 s of head, switch and
            evaluation on 2 CPU cores); the recipe's steps end it sooner on faster hardware.
        steps: fine-tune steps; ``None`` takes the suite's recipe.
        exemplars: ``N`` exemplars for the router, the papers' Auto-Switch setting (PROTOCOL.md).
        template_lines: training lines the template choice is scored on.
        seed: split, batches and exemplar choice.
    """

    time_cap: float = 60.0
    steps: int | None = None
    exemplars: int = 100
    template_lines: int = 100
    templates: tuple[tuple[str, ...], ...] = TEMPLATE_CANDIDATES
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.time_cap > 0:
            raise ValueError(f"time_cap must be > 0 seconds, got {self.time_cap}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.exemplars < 1 or self.template_lines < 1 or not self.templates:
            raise ValueError("exemplars and template_lines must be >= 1, with at least one template set")
