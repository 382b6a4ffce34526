"""A task taught in one visitor's session (:func:`tswitch.teach.run.teach` makes it)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..models.base import Head
from ..pack import EncodedTask
from .accuracy import Accuracy


@dataclass
class TaughtTask:
    """A task taught in one visitor's session: its head, switch, exemplars and measurements."""

    name: str
    suite: str
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    head: Head
    switches: dict  # tensor name -> PackedSwitch / DenseDelta (what the engine adds)
    encoded: EncodedTask  # the same switch as .tsw bytes
    exemplars: torch.Tensor  # (N, D) route features of training lines
    exemplar_texts: tuple[str, ...]
    accuracy: dict[str, Accuracy]  # "pretrained", "individual", "t-switch" on the held-back lines
    routing: Accuracy  # held-back lines the router sends to this task
    train_lines: int
    steps: int
    steps_planned: int
    losses: list[float]
    stopped: str  # "steps" or "time cap"
    seconds: dict[str, float]
    sample_tensor: str  # one switch tensor whose float task vector is kept for the tour's alpha slider
    sample_tau: torch.Tensor
    num_params: int
    created: float = field(default_factory=time.time)

    @property
    def switch_bytes(self) -> int:
        """Bytes the switch takes in a ``.tsw`` pack: payloads and float32 scales."""
        return self.encoded.entry.total_bytes

    @property
    def float32_bytes(self) -> int:
        return 4 * self.num_params

    @property
    def density(self) -> float:
        return float(self.encoded.entry.density)

    @property
    def nbytes(self) -> int:
        """Memory this task holds: packed switch, .tsw bytes, exemplars, head, the sample tensor."""
        tensors = [self.exemplars, self.sample_tau, self.head.weight, self.head.bias]
        return (
            sum(e.nbytes for e in self.switches.values())
            + sum(len(p) for p in self.encoded.payloads)
            + sum(t.numel() * t.element_size() for t in tensors)
        )

    def summary(self) -> dict:
        """JSON-ready account (what the ``teach`` endpoint returns)."""
        return {
            "task": self.name,
            "suite": self.suite,
            "labels": list(self.labels),
            "templates": list(self.templates),
            "train_lines": self.train_lines,
            "held_back_lines": self.accuracy["pretrained"].total,
            "accuracy": {k: a.as_dict() for k, a in self.accuracy.items()},
            "routing": self.routing.as_dict(),
            "fine_tune": {
                "steps": self.steps,
                "steps_planned": self.steps_planned,
                "stopped": self.stopped,
                "first_loss": self.losses[0] if self.losses else None,
                "last_loss": self.losses[-1] if self.losses else None,
            },
            "switch": {
                "alpha": self.encoded.entry.alpha,
                "density": self.density,
                "bytes": self.switch_bytes,
                "float32_bytes": self.float32_bytes,
                "layouts": sorted(set(self.encoded.entry.encodings)),
            },
            "exemplars": len(self.exemplar_texts),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }
