"""Routing cost: Auto-Switch's exact k-NN over every exemplar vs Auto-FlexSwitch's low-rank search
over K-means centres (journal Tab. XIII), on a built suite's own routers and test inputs.

    python -m benchmarks.bench_routing --suite vision-effnet [--repeat 7] [--batch 1 64]

The suite needs an Auto-FlexSwitch router (``python -m tswitch flex --suite S`` then
``--collect``). Routing features of the test split are computed once (the backbone forward both
routers share is not part of the difference); then, for each batch size, the median time of
routing every test query with each router (``router.route``: normalise, project for the low-rank
one, search, vote) is printed per query, with each router's stored bytes, multiply-adds per query
and its routing accuracy on those queries. Measured numbers only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (faiss index, allocations)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="test examples per task")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tswitch.suites.suite import Suite

    suite = Suite.open(args.suite)
    if not suite.has_flex:
        print(f"suite {suite.name} has no Auto-FlexSwitch router; run python -m tswitch flex first")
        return 2
    sets = suite.eval_sets("test", args.limit)
    feats, truth = [], []
    for task in suite.task_names:
        f = sets[task].routing_features(suite.adapter)
        feats.append(f)
        truth += [task] * f.shape[0]
    queries = torch.cat(feats)
    routers = {
        "auto-switch (k-NN over exemplars)": suite.router,
        "auto-flexswitch (low-rank, centres)": suite.flex_router,
    }
    print(
        f"suite {suite.name}: {queries.shape[0]} test queries of dim {queries.shape[1]}; "
        f"torch threads {torch.get_num_threads()}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus"
    )
    print(
        f"{'router':<38}{'entries':>8}{'bytes':>10}{'MACs/query':>12}{'routing acc':>12}"
        + "".join(f"{'us/query @' + str(b):>16}" for b in args.batch)
    )
    for name, router in routers.items():
        routed = router.route(queries, k=router.k)
        acc = sum(router.task_names[int(t)] == want for t, want in zip(routed.routed_task, truth)) / len(truth)
        macs = router.macs_per_query() if hasattr(router, "macs_per_query") else router.num_exemplars * router.dim
        nbytes = router.nbytes if hasattr(router, "nbytes") else 4 * router.features.numel()
        cells = []
        for b in args.batch:
            chunks = list(torch.split(queries, b))
            seconds = _time(lambda: [router.route(c, k=router.k) for c in chunks], args.repeat)  # noqa: B023 (called here)
            cells.append(f"{1e6 * seconds / queries.shape[0]:>16.1f}")
        print(f"{name:<38}{router.num_exemplars:>8}{nbytes:>10,}{macs:>12,}{acc:>12.4f}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
