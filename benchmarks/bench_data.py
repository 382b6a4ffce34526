"""How fast the offline suites' rendered image tasks load (letters, shapes, textures).

    python -m benchmarks.bench_data [--repeat 3]

Prints images per second (best of ``--repeat``). Measured numbers only.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from tswitch.suites.data import load_task

    for name, n in (("letters", 13), ("shapes", 42), ("textures", 37)):
        best, count = float("inf"), 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            count = len(load_task(name, n_per_class=n))
            best = min(best, time.perf_counter() - start)
        print(f"{name:<10}{count:>6} images  {best:6.2f} s  {count / best:8.0f} images/s")


if __name__ == "__main__":
    main()
