"""Evaluation throughput of a CLIP vision tower per device and compute dtype, with merged weights.

    python benchmarks/bench_clip_suite.py                       # a tiny random CLIP, offline
    python benchmarks/bench_clip_suite.py --model openai/clip-vit-base-patch32 --batch-size 128

Times ``adapter.features(batch, merged_weights)`` -- the forward every method of a suite runs --
for each available device (cpu, and cuda when present) and each of float32 / bfloat16 / float16,
and prints measured images per second. Nothing is claimed for a device that is not present.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_clip(folder: str, image_size: int) -> str:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(
        image_size=image_size,
        patch_size=32,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
    )
    transformers.CLIPVisionModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="CLIP checkpoint (default: a tiny random ViT, 4 layers, 256 wide)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--devices", nargs="+", default=None)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from tswitch.models import load_adapter

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    tmp = tempfile.mkdtemp(prefix="tswitch-bench-")
    source = args.model or tiny_clip(tmp, args.image_size)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
        for _ in range(args.batch_size)
    ]
    print(
        f"model {args.model or 'tiny random CLIP ViT (4 x 256)'}, batch {args.batch_size}, "
        f"{args.batches} timed batches, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"{'device':8s} {'dtype':9s} {'images/s':>10s} {'ms/batch':>9s}")
    for device in devices:
        for dtype in args.dtypes:
            adapter = load_adapter("hf-clip-vision", source=source, device=device, dtype=dtype)
            batch = adapter.preprocess(images)
            merged = {k: v + 1e-3 for k, v in adapter.state_dict().items() if v.is_floating_point()}
            adapter.features(batch, merged)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.batches):
                adapter.features(batch, merged)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / args.batches
            print(f"{device:8s} {dtype:9s} {args.batch_size / seconds:10.1f} {1000 * seconds:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
