"""Routed evaluation (Auto-Switch over a whole split) under each engine strategy and delta budget.

    python benchmarks/bench_routed_eval.py --suite assets/text-minilm --limit 100 \
        --configs merge:0,merge:2048,tenant:2048,auto:2048 [--threads 2]

Each config is ``STRATEGY:MIB``: a :class:`~tswitch.merging.DynamicMergeEngine` with that strategy
and ``dense_bytes = MIB << 20`` is built over the suite's pack and runs
:func:`tswitch.suites.evaluate.evaluate_routed` on the first ``--limit`` test items of every task
(routing features computed once, before the timings). Printed per config: the engine's load time,
the evaluation time, the bytes its switches take as held, the average, and whether every per-task
accuracy equals the first config's. The suite builds use ``auto`` with
``EVAL_DENSE_BYTES`` (docs/ENGINE.md, "Offline evaluation"). Measured numbers only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", required=True)
    p.add_argument("--limit", type=int, default=100, help="test items per task")
    p.add_argument("--configs", default="merge:0,merge:2048,tenant:2048,auto:2048")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from tswitch.merging.engine import STRATEGIES
    from tswitch.suites.evaluate import evaluate_routed
    from tswitch.suites.suite import Suite

    configs = []
    for item in args.configs.split(","):
        strategy, _, mib = item.partition(":")
        if strategy not in STRATEGIES or not mib.isdigit():
            p.error(f"config {item!r} is not STRATEGY:MIB with STRATEGY in {', '.join(STRATEGIES)}")
        configs.append((strategy, int(mib)))
    if args.limit < 1 or args.threads < 1:
        p.error("--limit and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    suite = Suite.open(args.suite)
    sets = suite.eval_sets("test", args.limit)
    for data in sets.values():
        data.routing_features(suite.adapter)
    k = suite.manifest.router.k
    print(f"{suite.name}: {sum(len(s.labels) for s in sets.values())} test items, C {k}, {args.threads} threads")
    reference = None
    for strategy, mib in configs:
        t0 = time.perf_counter()
        engine = DynamicMergeEngine(
            suite.adapter,
            suite.adapter.state_dict(),
            PackedSwitches.from_pack(suite.pack),
            suite.heads,
            cache_size=16,
            strategy=strategy,
            dense_bytes=mib << 20,
        )
        t1 = time.perf_counter()
        res = evaluate_routed(AutoSwitch(engine, suite.router), suite.heads, sets, k)
        t2 = time.perf_counter()
        reference = reference or res["per_task"]
        print(
            f"{strategy}:{mib:<6} load {t1 - t0:6.1f} s  evaluation {t2 - t1:7.1f} s  "
            f"held {engine.nbytes() / 2**20:6.0f} MiB  average {res['average']:.4f}  "
            f"same per-task accuracies as the first: {res['per_task'] == reference}"
            + (f"  (merging: {engine.unsupported})" if engine.unsupported else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
