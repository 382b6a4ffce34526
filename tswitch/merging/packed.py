"""Every task's switches held packed in memory, and how each entry adds itself to a merged tensor.

:class:`PackedSwitches` keeps every task's switches bit-packed (mask and polarity one bit per entry
each, plus a float scale; ``dense-f16`` entries as float16): 1/16 of a float32 task vector, never
one dense tensor per task. FlexSwitch's quantised switches (journal Eq. 15) keep the packed mask and
one ``uint8``/``int32`` codebook index per kept entry. Each entry kind follows :class:`SwitchEntry`,
the protocol the engine (:mod:`.engine`) merges with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from ..core.binary import TSwitch
from ..core.quant import Codebook, QSwitch

if TYPE_CHECKING:
    from ..pack import SwitchPack


class SwitchEntry(Protocol):
    """One tensor of one task as the engine holds it."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def nbytes(self) -> int: ...

    def to(self, device) -> SwitchEntry: ...

    def add_to(self, out: torch.Tensor, weight: float, lut: torch.Tensor) -> None:
        """``out += weight · (this task-vector tensor)`` for the flat float ``out`` (in place);
        ``lut`` is :func:`signed_lut` on ``out``'s device."""
        ...


_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # MSB-first, as np.packbits and the .tsw codec


def pack_bool_tensor(bits: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> ``uint8`` tensor of ``ceil(n / 8)`` bytes, MSB-first, zero-padded (the bit order
    of :mod:`tswitch.codec.bits`, whose functions work on NumPy arrays and ``bytes`` instead)."""
    flat = bits.detach().reshape(-1).cpu().numpy().astype(np.bool_, copy=False)
    return torch.from_numpy(np.packbits(flat))


def unpack_bool_tensor(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bool_tensor`: the first ``n`` bits as a bool tensor (vectorised shift/and)."""
    shifts = _SHIFTS.to(packed.device)
    return ((packed.unsqueeze(1) >> shifts) & 1).view(-1)[:n].bool()  # (bytes, 8) -> (n,)


def signed_lut(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(65536, 8)`` float32 table: row ``mask_byte << 8 | positive_byte`` holds the 8 entries of
    ``mask ⊙ sign`` those two bytes encode (``positive`` is a subset of ``mask``).

    One gather per byte pair replaces unpacking both bit planes and combining them (~1.5x faster).
    """
    codes = torch.arange(1 << 16, device=device)
    mask = unpack_bool_tensor((codes >> 8).to(torch.uint8), codes.numel() * 8).view(-1, 8)
    positive = unpack_bool_tensor((codes & 0xFF).to(torch.uint8), codes.numel() * 8).view(-1, 8)
    return (2 * (positive & mask).float() - mask.float()).contiguous()


@dataclass(frozen=True)
class PackedSwitch:
    """One tensor's switches, bit-packed (T-Switch Eq. 7).

    Attributes:
        shape: the tensor's shape.
        mask: ``uint8`` bytes of the activation switch (1 bit per entry).
        positive: ``uint8`` bytes of the polarity switch, set only where ``mask`` is (1 = +1).
        scale: the switch knob.
    """

    shape: tuple[int, ...]
    mask: torch.Tensor
    positive: torch.Tensor
    scale: float

    @classmethod
    def from_tswitch(cls, switch: TSwitch) -> PackedSwitch:
        return cls(
            tuple(switch.shape),
            pack_bool_tensor(switch.mask),
            pack_bool_tensor(switch.positive & switch.mask),
            float(switch.scale),
        )

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.mask.numel() + self.positive.numel() + 4  # + the float32 scale

    def to_tswitch(self) -> TSwitch:
        n = self.numel
        return TSwitch(
            unpack_bool_tensor(self.mask, n).view(self.shape),
            unpack_bool_tensor(self.positive, n).view(self.shape),
            self.scale,
        )

    def to(self, device) -> PackedSwitch:
        return PackedSwitch(self.shape, self.mask.to(device), self.positive.to(device), self.scale)

    def add_to(self, out: torch.Tensor, weight: float, lut: torch.Tensor) -> None:
        """``out += weight · scale · mask ⊙ sign`` for a flat float ``out`` (in place)."""
        code = (self.mask.to(torch.int32) << 8) | self.positive.to(torch.int32)  # (bytes,)
        out.add_(lut[code].view(-1)[: out.numel()], alpha=weight * self.scale)


@dataclass(frozen=True)
class PackedQuantSwitch:
    """One tensor's quantised switch (FlexSwitch, journal Eq. 13-15), packed.

    Attributes:
        shape: the tensor's shape.
        mask: ``uint8`` bytes of the hard mask (1 bit per entry, MSB-first).
        codes: codebook index of every kept entry, in increasing position (``uint8`` up to 8 bits).
        codebook: the tensor's quantiser: level ``i`` is ``lo + (i + 0.5) · step``.
        scale: the learned knob ``softplus(kappa)``.
    """

    shape: tuple[int, ...]
    mask: torch.Tensor
    codes: torch.Tensor
    codebook: Codebook
    scale: float

    @classmethod
    def from_qswitch(cls, switch: QSwitch) -> PackedQuantSwitch:
        dtype = torch.uint8 if switch.bits <= 8 else torch.int32
        return cls(
            tuple(switch.shape),
            pack_bool_tensor(switch.mask),
            switch.codes.to(dtype).contiguous(),
            switch.codebook,
            float(switch.scale),
        )

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.mask.numel() + self.codes.numel() * self.codes.element_size() + 12  # + scale, lo, step

    def to(self, device) -> PackedQuantSwitch:
        return PackedQuantSwitch(self.shape, self.mask.to(device), self.codes.to(device), self.codebook, self.scale)

    def add_to(self, out: torch.Tensor, weight: float, lut: torch.Tensor) -> None:
        """``out[mask] += weight · scale · (lo + (code + 0.5) · step)`` for a flat float ``out``."""
        kept = unpack_bool_tensor(self.mask, out.numel())
        values = self.codebook.levels(self.codes.to(torch.int64)).to(out.dtype)
        out[kept] += (weight * self.scale) * values


@dataclass(frozen=True)
class DenseDelta:
    """A task-vector tensor kept dense (the pack's ``dense-f16`` encoding), in float16."""

    values: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()

    def to(self, device) -> DenseDelta:
        return DenseDelta(self.values.to(device))

    def add_to(self, out: torch.Tensor, weight: float, lut: torch.Tensor) -> None:
        out.add_(self.values.reshape(-1).to(out.dtype), alpha=weight)


class PackedSwitches:
    """Every task's switches, packed: ``entries[task][tensor name]`` is a :class:`PackedSwitch`
    or a :class:`DenseDelta`. Build with :meth:`from_pack` or :meth:`from_switches`."""

    def __init__(self, entries: Mapping[str, Mapping[str, SwitchEntry]]):
        if not entries:
            raise ValueError("need at least one task, got 0")
        self.entries = {task: dict(items) for task, items in entries.items()}
        self.tasks: tuple[str, ...] = tuple(self.entries)

    @classmethod
    def from_switches(cls, switches: Mapping[str, Mapping[str, object]]) -> PackedSwitches:
        """Pack ``{task: {name: TSwitch, QSwitch or dense tensor}}``; dense tensors are kept in float16.

        Raises:
            ValueError: an item is none of these.
        """
        return cls({task: {name: _pack_item(item) for name, item in items.items()} for task, items in switches.items()})

    @classmethod
    def from_pack(cls, pack: SwitchPack, tasks: Sequence[str] | None = None) -> PackedSwitches:
        """Decode the chosen tasks of a ``.tsw`` pack (default: all) one at a time and pack them."""
        names = list(pack.tasks if tasks is None else tasks)
        unknown = [t for t in names if t not in pack.tasks]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; the pack holds: {', '.join(pack.tasks)}")
        return cls.from_switches({task: pack.load_task(task) for task in names})

    def to(self, device) -> PackedSwitches:
        return PackedSwitches({t: {n: e.to(device) for n, e in items.items()} for t, items in self.entries.items()})

    @property
    def names(self) -> set[str]:
        """Every tensor name some task covers."""
        return {name for items in self.entries.values() for name in items}

    def nbytes(self) -> int:
        """Bytes of every stored tensor (bit planes, float16 values, scales)."""
        return sum(e.nbytes for items in self.entries.values() for e in items.values())

    def dense_nbytes(self) -> int:
        """Bytes the same tasks would take as dense float32 task vectors."""
        return sum(4 * math.prod(e.shape) for items in self.entries.values() for e in items.values())

    def __repr__(self) -> str:
        return f"PackedSwitches({len(self.tasks)} tasks, {self.nbytes():,} bytes)"


def _dense(item: torch.Tensor) -> DenseDelta:
    if not torch.is_floating_point(item):
        raise ValueError(f"expected a float tensor, got {item.dtype}")
    return DenseDelta(item.detach().to(torch.float16).contiguous())


# decoded pack item type -> its packed entry (SwitchPack.load_task's TSwitch, QSwitch or dense tensor)
PACKERS: dict[type, Callable[[object], SwitchEntry]] = {
    TSwitch: PackedSwitch.from_tswitch,  # type: ignore[dict-item]
    QSwitch: PackedQuantSwitch.from_qswitch,  # type: ignore[dict-item]
    torch.Tensor: _dense,  # type: ignore[dict-item]
}


def _pack_item(item: object) -> SwitchEntry:
    for kind, packer in PACKERS.items():
        if isinstance(item, kind):
            return packer(item)
    raise ValueError(f"expected a TSwitch, a QSwitch or a float tensor, got {type(item).__name__}")
