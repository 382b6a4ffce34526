"""Latency of the app's ``predict``, text and image, after warm-up: in-process and over loopback HTTP.

    python benchmarks/bench_app.py [--text SUITE] [--image SUITE] [--requests 40] [--threads 1]

For each suite (default: the first text and the first image suite the app serves; set
``TSWITCH_SUITES`` to add folders) the suite's example inputs are sent in turn:

- *in-process*: :func:`tswitch.app.callbacks.predict` called directly (routing forward, k-NN,
  merged weights from the engine's cache, the merged forward);
- *HTTP*: the same call through ``gradio_client`` to the demo launched on a free loopback port
  (adds gradio's queue, JSON and, for images, the upload).

Warm-up sends every example once (loading the suite and filling the merged-weights cache), so the
numbers are steady-state serving latency. Targets on CPU: p50 <= 250 ms text, <= 300 ms image.
Measured numbers only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGET_P50_MS = {"text": 250, "image": 300}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_calls(call, inputs: list, requests: int) -> list[float]:
    """Milliseconds of ``requests`` calls cycling through ``inputs``; raises on an error answer."""
    times = []
    for i in range(requests):
        start = time.perf_counter()
        result = call(inputs[i % len(inputs)])
        times.append(1000 * (time.perf_counter() - start))
        if "error" in result:
            raise RuntimeError(f"predict answered an error: {result['error']}")
    return times


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="text suite (default: the first the app serves)")
    parser.add_argument("--image", help="image suite (default: the first the app serves)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per suite and path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription)")
    args = parser.parse_args()

    import torch
    from gradio_client import Client, handle_file

    from tswitch.app import callbacks, catalogue
    from tswitch.app.layout import build_demo, launch_options

    torch.set_num_threads(args.threads)
    chosen = {"text": args.text, "image": args.image}
    for name, info in catalogue.catalogue().items():
        if not chosen.get(info.modality):
            chosen[info.modality] = name
    chosen = {m: n for m, n in chosen.items() if n}
    if not chosen:
        print("no suite found: build one with demos/build_suite.py or set TSWITCH_SUITES")
        return 2

    demo = build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options("127.0.0.1", port))
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    print(f"{'suite':<24}{'path':<12}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'target p50':>12}")
    try:
        for modality, name in chosen.items():
            examples = [e for _, e in catalogue.get(name).examples()]
            k = catalogue.get(name).default_k("auto-switch")

            def local(x, name=name, modality=modality, k=k):
                return callbacks.predict(
                    name, x if modality == "text" else None, None if modality == "text" else x, "auto-switch", k
                )

            def remote(x, name=name, modality=modality, k=k):
                return client.predict(
                    name,
                    x if modality == "text" else None,
                    None if modality == "text" else handle_file(x),
                    "auto-switch",
                    k,
                    api_name="/predict",
                )

            for path, call in (("in-process", local), ("HTTP", remote)):
                time_calls(call, examples, len(examples))  # warm-up: load, fill the merge cache
                times = time_calls(call, examples, args.requests)
                print(
                    f"{name:<24}{path:<12}{len(times):>5}{percentile(times, 50):>9.1f}"
                    f"{percentile(times, 95):>9.1f}{statistics.fmean(times):>9.1f}"
                    f"{TARGET_P50_MS[modality]:>10} ms"
                )
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
