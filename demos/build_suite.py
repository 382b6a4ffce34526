"""Build an offline suite: fine-tune, compress, route, evaluate every method, write assets/NAME/.

python demos/build_suite.py --suite text-minilm          # resumable: an interrupted run goes on where it stopped
python demos/build_suite.py --suite vision-effnet
python demos/build_suite.py --suite text-minilm --smoke --out /tmp/smoke   # CI: a minute or two
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    from tqdm.auto import tqdm

    from tswitch.suites.build import run_build
    from tswitch.suites.spec import SUITES, get_suite_spec, smoke

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument("--out", help="output folder (default: assets/NAME)")
    parser.add_argument("--smoke", action="store_true", help="tiny subsets and a few steps (CI)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 avoids OpenMP oversubscription when other jobs share the cores)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="recompute every stage (default: resume the finished stages of an interrupted run of this build)",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    spec = get_suite_spec(args.suite)
    if args.smoke:
        spec = smoke(spec)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = args.out or os.path.join(root, "assets", spec.name)
    results = run_build(
        spec,
        out,
        log=tqdm.write,
        progress=tqdm,
        command=" ".join(sys.argv),
        resume=not args.smoke,
        fresh=args.fresh,
    )
    m = results["methods"]
    print(f"\n{'method':<18}{'average':>9}{'extra MB':>11}  routing")
    for name, r in m.items():
        routing = r.get("routing_accuracy")
        print(
            f"{name:<18}{r['average']:>9.4f}{r['extra_bytes'] / 1e6:>11.2f}  "
            f"{'' if routing is None else f'{routing:.4f}'}"
        )
    print(f"wrote {out} in {results['provenance']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
