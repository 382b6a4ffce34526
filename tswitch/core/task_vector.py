"""Task vectors: the change a fine-tune made to a pre-trained model.

``tau = theta_ft - theta_0`` (T-Switch paper §3.1; journal §III-A). The algebra follows
mlfoundations/task_vectors: ``+``, ``-``, scalar ``*``, ``sum()`` and ``apply_to(base, coef)``.

Every floating tensor present in both state dicts is part of the vector, buffers included
(BatchNorm running statistics change during fine-tuning and are part of a task's state);
integer buffers (``num_batches_tracked``, position ids) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping

import torch

StateDict = Mapping[str, torch.Tensor]


def is_task_tensor(tensor: torch.Tensor) -> bool:
    """Whether a state-dict entry belongs in a task vector (floating point only)."""
    return torch.is_floating_point(tensor)


def check_same_layout(
    reference: StateDict, other: StateDict, *, what: str = "state dict", only_floating: bool = True
) -> None:
    """Raise ``ValueError`` naming every missing/extra name and every shape mismatch.

    Args:
        reference: the state dict whose names and shapes are expected.
        other: the state dict being checked against it.
        what: how to call ``other`` in the message.
        only_floating: compare only floating tensors of ``reference``.
    """
    ref = {k: v for k, v in reference.items() if not only_floating or is_task_tensor(v)}
    oth = {k: v for k, v in other.items() if not only_floating or is_task_tensor(v)}
    missing = sorted(set(ref) - set(oth))
    extra = sorted(set(oth) - set(ref))
    shapes = sorted(
        f"{k}: {tuple(ref[k].shape)} vs {tuple(oth[k].shape)}"
        for k in set(ref) & set(oth)
        if ref[k].shape != oth[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing in {what}: {_short(missing)}")
    if extra:
        problems.append(f"unexpected in {what}: {_short(extra)}")
    if shapes:
        problems.append(f"shape mismatch: {_short(shapes)}")
    if problems:
        raise ValueError("; ".join(problems))


def _short(items: list[str], limit: int = 5) -> str:
    head = ", ".join(items[:limit])
    return head if len(items) <= limit else f"{head} (+{len(items) - limit} more)"


class TaskVector:
    """A mapping from tensor names to float tensors with vector-space algebra.

    Build one with :meth:`from_state_dicts` (``theta_ft - theta_0``) or directly from a dict.
    """

    def __init__(self, vector: Mapping[str, torch.Tensor]):
        self.vector: dict[str, torch.Tensor] = dict(vector)

    @classmethod
    def from_state_dicts(cls, pretrained: StateDict, finetuned: StateDict) -> TaskVector:
        """``tau = theta_ft - theta_0`` over every floating tensor of the pre-trained model.

        Raises:
            ValueError: names the tensors missing from either side or whose shapes differ.
        """
        check_same_layout(pretrained, finetuned, what="fine-tuned model")
        vector = {}
        for name, base in pretrained.items():
            if not is_task_tensor(base):
                continue
            vector[name] = finetuned[name].detach().float() - base.detach().float()
        return cls(vector)

    # -- mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self.vector[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.vector)

    def __len__(self) -> int:
        return len(self.vector)

    def items(self) -> ItemsView[str, torch.Tensor]:
        return self.vector.items()

    def keys(self) -> KeysView[str]:
        return self.vector.keys()

    @property
    def numel(self) -> int:
        """Number of scalar parameters in the vector."""
        return sum(t.numel() for t in self.vector.values())

    # -- algebra ----------------------------------------------------------------------------
    def _zip(self, other: TaskVector) -> Iterable[tuple[str, torch.Tensor, torch.Tensor]]:
        check_same_layout(self.vector, other.vector, what="other task vector")
        return ((k, v, other.vector[k]) for k, v in self.vector.items())

    def __add__(self, other: object) -> TaskVector:
        if isinstance(other, (int, float)) and other == 0:  # lets builtin sum() start at 0
            return self
        if not isinstance(other, TaskVector):
            return NotImplemented
        return TaskVector({k: a + b for k, a, b in self._zip(other)})

    __radd__ = __add__

    def __neg__(self) -> TaskVector:
        return TaskVector({k: -v for k, v in self.vector.items()})

    def __sub__(self, other: TaskVector) -> TaskVector:
        if not isinstance(other, TaskVector):
            return NotImplemented
        return TaskVector({k: a - b for k, a, b in self._zip(other)})

    def __mul__(self, coef: float) -> TaskVector:
        if not isinstance(coef, (int, float)):
            return NotImplemented
        return TaskVector({k: coef * v for k, v in self.vector.items()})

    __rmul__ = __mul__

    def map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> TaskVector:
        """Apply ``fn(name, tensor) -> tensor`` to every entry."""
        return TaskVector({k: fn(k, v) for k, v in self.vector.items()})

    def apply_to(self, base: StateDict, coef: float = 1.0) -> dict[str, torch.Tensor]:
        """Return a new state dict ``theta_0 + coef * tau`` (``base`` is not modified).

        Tensors of ``base`` that the vector does not cover (integer buffers) are copied as they
        are; each result keeps the dtype of the base tensor.

        Raises:
            ValueError: the vector names tensors the base lacks, or shapes differ.
        """
        missing = sorted(set(self.vector) - set(base))
        if missing:
            raise ValueError(f"base model lacks tensors of the task vector: {_short(missing)}")
        shapes = sorted(
            f"{k}: {tuple(base[k].shape)} vs {tuple(v.shape)}"
            for k, v in self.vector.items()
            if base[k].shape != v.shape
        )
        if shapes:
            raise ValueError(f"shape mismatch: {_short(shapes)}")
        out = {}
        for name, tensor in base.items():
            if name in self.vector:
                work = torch.promote_types(tensor.dtype, torch.float32)  # float64 bases keep their precision
                out[name] = (tensor.to(work) + coef * self.vector[name].to(tensor.device, work)).to(tensor.dtype)
            else:
                out[name] = tensor.clone()
        return out

    def __repr__(self) -> str:
        return f"TaskVector({len(self)} tensors, {self.numel:,} params)"
