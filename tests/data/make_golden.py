"""Write the golden ``.tsw`` pack that pins the file format (tests/test_pack.py checks it).

Everything is built from small integer formulas, no random numbers, so re-running this script
writes the same bytes. Run it from the repository root only when the format changes on purpose:

    python -m tests.data.make_golden               # rewrites tests/data/golden.tsw (format version 1)
    python -m tests.data.make_golden --version 2   # rewrites tests/data/golden-v2.tsw

then update the pinned sha256 and the expected literals in tests/test_pack.py.

The pack covers three float tensors of a toy base model (``fc.weight`` (2, 4), ``fc.bias`` (3,),
``bn.running_mean`` (2,); the integer ``bn.num_batches_tracked`` is not part of a task) and two tasks:

- ``a``: SASS layout, alpha 0.5;
- ``b``: bitmap layout, alpha 0.25, ``fc.bias`` kept as a dense float16 copy (``dense_pattern``).

The version-2 pack adds a third task, ``c``: task ``a``'s vector in the ``golomb`` layout at alpha 0.5.
"""

from __future__ import annotations

import argparse
import os

import torch

from tswitch.core.task_vector import TaskVector
from tswitch.pack import create_pack, encode_task, tensor_specs

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.tsw")
GOLDEN_V2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden-v2.tsw")


def base_model() -> dict[str, torch.Tensor]:
    return {
        "fc.weight": torch.tensor([(i - 3.5) / 4 for i in range(8)]).view(2, 4),  # -0.875 .. 0.875
        "fc.bias": torch.tensor([j / 2 for j in range(3)]),
        "bn.running_mean": torch.tensor([1.0, -1.0]),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }


def task_vectors() -> dict[str, dict[str, torch.Tensor]]:
    return {
        "a": {
            "fc.weight": torch.tensor([float(i * i % 7 - 3) for i in range(8)]).view(2, 4),  # -3 -2 1 -1 -1 1 -2 -3
            "fc.bias": torch.tensor([float(j - 1) for j in range(3)]),  # -1 0 1
            "bn.running_mean": torch.zeros(2),
        },
        "b": {
            "fc.weight": torch.tensor([float(2 - i) for i in range(8)]).view(2, 4),  # 2 1 0 -1 -2 -3 -4 -5
            "fc.bias": torch.tensor([float(3 - 2 * j) for j in range(3)]),  # 3 1 -1
            "bn.running_mean": torch.zeros(2),
        },
    }


def finetuned(base: dict[str, torch.Tensor], tau: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v + tau[k] if k in tau else v.clone() for k, v in base.items()}
    out["bn.num_batches_tracked"] = torch.tensor(9, dtype=torch.int64)
    return out


def build(path: str, version: int = 1) -> None:
    """Write the golden pack of format ``version`` to ``path``."""
    base = base_model()
    specs = tensor_specs(base)
    taus = {name: TaskVector.from_state_dicts(base, finetuned(base, tau)) for name, tau in task_vectors().items()}
    tasks = [
        encode_task("a", taus["a"], specs, alpha=0.5, layout="sass"),
        encode_task("b", taus["b"], specs, alpha=0.25, layout="bitmap", dense_pattern=r"\.bias$"),
    ]
    if version == 2:
        tasks.append(encode_task("c", taus["a"], specs, alpha=0.5, layout="golomb"))
    # version 1 files predate the writer field; version 2 pins a fixed one so new releases keep the bytes
    create_pack(path, base, tasks, writer=None if version == 1 else "tswitch (golden file)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, choices=[1, 2], default=1, help="format version of the pack")
    parser.add_argument("--out", default=None, help="where to write the pack (default: golden.tsw / golden-v2.tsw)")
    args = parser.parse_args(argv)
    build(args.out or (GOLDEN if args.version == 1 else GOLDEN_V2), args.version)


if __name__ == "__main__":
    main()
