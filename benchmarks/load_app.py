"""Loopback load test of the app: N concurrent ``gradio_client`` clients calling ``predict`` for T seconds.

    python benchmarks/load_app.py [--clients 16] [--seconds 30] [--suite NAME] [--url URL]

Without ``--url`` it starts ``app.py`` in a subprocess on a free loopback port (set
``TSWITCH_SUITES`` to serve extra folders) and stops it afterwards. Each client sends the suite's
example inputs in turn until the time is up; a request still running then gets ``--timeout``
seconds more, so the test is bounded. Reports requests, errors (exceptions, timeouts and
``{"error": ...}`` answers), throughput and latency percentiles. Measured numbers only.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def start_app(startup: float = 180.0) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "app.py"), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + startup
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"app.py did not start within {startup:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    parser.add_argument("--suite", help="suite to call (default: the first text suite the app serves)")
    parser.add_argument("--url", help="an app already running (default: start app.py here)")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from tswitch.app import catalogue

    names = [n for n, i in catalogue.catalogue().items() if i.modality == "text"] or catalogue.names()
    suite = args.suite or (names[0] if names else None)
    if suite is None:
        print("no suite found: build one with demos/build_suite.py or set TSWITCH_SUITES")
        return 2
    info = catalogue.get(suite)
    examples = [e for _, e in info.examples()]
    proc, url = (None, args.url) if args.url else start_app()
    latencies, errors, lock = [], [], threading.Lock()
    try:
        warm = Client(url, verbose=False)
        args_of = (
            (lambda x: (suite, x, None, "auto-switch", info.default_k("auto-switch")))
            if info.modality == "text"
            else (lambda x: (suite, None, handle_file(x), "auto-switch", info.default_k("auto-switch")))
        )
        for x in examples:  # warm-up: the suite loads, the merge cache fills
            warm.predict(*args_of(x), api_name="/predict")

        stop = time.monotonic() + args.seconds

        def client(i: int) -> None:
            c = Client(url, verbose=False)
            j = i
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    result = c.submit(*args_of(examples[j % len(examples)]), api_name="/predict").result(args.timeout)
                    failed = result.get("error") if isinstance(result, dict) else f"unexpected answer {result!r}"
                except Exception as exc:  # timeouts and connection errors count as errors
                    failed = f"{type(exc).__name__}: {exc}"
                with lock:
                    (errors.append(failed) if failed else latencies.append(1000 * (time.perf_counter() - start)))
                j += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + args.timeout + 30)
        elapsed = time.monotonic() - began
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    done = len(latencies) + len(errors)
    print(f"{args.clients} clients x {args.seconds:g} s on {suite} ({info.modality}), {url}")
    print(f"requests {done}, errors {len(errors)}, throughput {len(latencies) / elapsed:.1f}/s")
    if latencies:
        print(
            f"latency ms: p50 {percentile(latencies, 50):.0f}  p95 {percentile(latencies, 95):.0f}  "
            f"p99 {percentile(latencies, 99):.0f}  max {max(latencies):.0f}  mean {statistics.fmean(latencies):.0f}"
        )
    for message in sorted(set(errors))[:5]:
        print(f"error: {message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
