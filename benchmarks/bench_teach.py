"""Teach a suite new tasks as the app does, and print what it measures.

1. Wall time of one teach run at the app's default time cap, and the held-back accuracy it reaches
   (Pre-trained, Individual, T-Switch, with 95% Wilson intervals, and routing), on each bundled
   example task (two real labelled sets of different kinds: chat topics and languages).
2. Memory: ``--tasks`` more runs (short fine-tunes: memory does not depend on the steps) kept in a
   :class:`~tswitch.teach.store.LiveTasks` with the app's caps; the process's resident memory and the
   store's bytes after each.

    python benchmarks/bench_teach.py [--suite text-minilm] [--threads 2] [--tasks 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def rss_mb() -> float:
    """Resident memory of this process (Linux ``/proc``), in MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="text-minilm")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the CPU Space has 2 cores)")
    parser.add_argument("--tasks", type=int, default=20, help="taught tasks for the memory measurement")
    parser.add_argument("--skip-full", action="store_true", help="only the memory measurement")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument(
        "--default-malloc", action="store_true", help="leave glibc's malloc as it is (app.py bounds it)"
    )
    args = parser.parse_args()

    import torch

    from tswitch.suites.suite import Suite
    from tswitch.teach.data import example_lines, example_names, parse_lines
    from tswitch.teach.run import TeachConfig, teach
    from tswitch.teach.store import MAX_LIVE_BYTES, MAX_LIVE_TASKS, LiveTasks

    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        from tswitch.app.process import bounded_malloc

        bounded_malloc()  # as app.py does for the server
    suite = Suite.open(args.suite)
    start = time.monotonic()
    for part in ("adapter", "heads", "pack", "router", "exemplars"):
        getattr(suite, part)
    out: dict = {"suite": suite.name, "threads": args.threads, "load_seconds": round(time.monotonic() - start, 1)}
    default = TeachConfig()
    print(
        f"suite {suite.name} loaded in {out['load_seconds']} s; time cap {default.time_cap:g} s, {args.threads} threads"
    )

    out["runs"] = {}
    for name in [] if args.skip_full else example_names():
        data = parse_lines(example_lines(name))
        start = time.monotonic()
        task = teach(suite, data, name, default)
        wall = time.monotonic() - start
        summary = task.summary()
        out["runs"][name] = {"wall_seconds": round(wall, 1), **summary}
        acc = summary["accuracy"]
        print(
            f"{name}: {len(data)} lines, {len(data.labels)} classes; {wall:.0f} s wall "
            f"({', '.join(f'{k} {v:.0f}' for k, v in summary['seconds'].items())} s); "
            f"{summary['fine_tune']['steps']} steps ({summary['fine_tune']['stopped']})"
        )
        for method, a in acc.items():
            print(f"  {method:<11} {a['accuracy']:6.1%}  [{a['ci95'][0]:.1%}, {a['ci95'][1]:.1%}]  of {a['total']}")
        r = summary["routing"]
        print(f"  routed to it {r['accuracy']:6.1%}  [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]")
        print(f"  switch {summary['switch']['bytes']:,} B, density {summary['switch']['density']:.2%}")
        del task

    store = LiveTasks()
    quick = TeachConfig(steps=1)
    data = parse_lines(example_lines(example_names()[0]))
    before = rss_mb()
    rows = []
    for i in range(args.tasks):
        store.add(f"visitor-{i % 7}", teach(suite, data, f"task-{i}", quick))
        rows.append({"taught": i + 1, "rss_mb": round(rss_mb(), 1), "live": len(store), "live_bytes": store.nbytes()})
        print(f"after {i + 1:2d} taught: RSS {rows[-1]['rss_mb']:.0f} MB, {len(store)} live, {store.nbytes():,} B")
    out["memory"] = {
        "rss_before_mb": round(before, 1),
        "rows": rows,
        "max_live_tasks": MAX_LIVE_TASKS,
        "max_live_bytes": MAX_LIVE_BYTES,
    }
    if rows:
        peak = max(r["live_bytes"] for r in rows)
        print(
            f"memory: RSS {before:.0f} MB before, {rows[-1]['rss_mb']:.0f} MB after {len(rows)} taught tasks; "
            f"live tasks at most {max(r['live'] for r in rows)} (cap {MAX_LIVE_TASKS}), "
            f"{peak:,} B (cap {MAX_LIVE_BYTES:,} B)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {os.path.abspath(args.json)}")


if __name__ == "__main__":
    main()
