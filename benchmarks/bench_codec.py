"""Codec speed: compress + encode and decode a synthetic CLIP ViT-B/32 vision-tower task vector.

    python benchmarks/bench_codec.py [--alpha 0.7 0.9] [--layout sass bitmap] [--repeat 3]

Prints parameters per second per stage (best of ``--repeat``) and bits per parameter next to
journal Eq. 16 and the entropy bound ``H(d) + d`` (a mask of density ``d`` needs ``H(d)`` bits per
entry, and each kept entry one polarity bit). Measured numbers only; nothing is assumed.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch


def vit_b32_vision_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor shapes of open_clip / OpenAI CLIP ViT-B/32's visual tower (87.8M parameters)."""
    w, layers, mlp, patch, tokens, out = 768, 12, 3072, 32, 50, 512
    shapes = {"conv1.weight": (w, 3, patch, patch), "class_embedding": (w,),
              "positional_embedding": (tokens, w), "ln_pre.weight": (w,), "ln_pre.bias": (w,)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        shapes.update({p + "ln_1.weight": (w,), p + "ln_1.bias": (w,),
                       p + "attn.in_proj_weight": (3 * w, w), p + "attn.in_proj_bias": (3 * w,),
                       p + "attn.out_proj.weight": (w, w), p + "attn.out_proj.bias": (w,),
                       p + "ln_2.weight": (w,), p + "ln_2.bias": (w,),
                       p + "mlp.c_fc.weight": (mlp, w), p + "mlp.c_fc.bias": (mlp,),
                       p + "mlp.c_proj.weight": (w, mlp), p + "mlp.c_proj.bias": (w,)})
    shapes.update({"ln_post.weight": (w,), "ln_post.bias": (w,), "proj": (w, out)})
    return shapes


def entropy_bits(d: float) -> float:
    """``H(d) + d`` bits per parameter: mask entropy plus one polarity bit per kept entry."""
    if d <= 0 or d >= 1:
        return d
    return -(d * math.log2(d) + (1 - d) * math.log2(1 - d)) + d


def best_of(fn, repeat: int):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.7, 0.9])
    parser.add_argument("--layout", nargs="+", default=["sass", "bitmap"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from tswitch.codec.layouts import get_layout
    from tswitch.codec.sass import sass_bits
    from tswitch.core.task_vector import TaskVector
    from tswitch.pack import decode_dense, encode_task, tensor_specs
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(0)
    base = {k: torch.zeros(s) for k, s in vit_b32_vision_shapes().items()}
    # Task vectors are heavy-tailed around 0; a Laplace sample stands in for a real fine-tune.
    tau = TaskVector({k: torch.distributions.Laplace(0.0, 1e-4).sample(s) for k, s in
                      vit_b32_vision_shapes().items()})
    specs = tensor_specs(base)
    n = sum(s.numel for s in specs)
    print(f"# synthetic ViT-B/32 vision tower: {n:,} params in {len(specs)} tensors; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'layout':<7}{'alpha':>6}{'compress+encode':>18}{'decode->dense':>16}{'bits/param':>12}"
          f"{'Eq.16':>9}{'H(d)+d':>9}{'density':>9}")
    for layout in args.layout:
        for alpha in args.alpha:
            t_enc, task = best_of(lambda: encode_task("t", tau, specs, alpha, layout), args.repeat)
            e = task.entry

            def decode_all():
                jobs = list(zip(task.payloads, specs, e.encodings, task.scales))
                with ThreadPoolExecutor(2) as pool:
                    return list(pool.map(lambda a: decode_dense(a[0], a[1], a[2], 1, float(a[3])), jobs))
            t_dec, dense = best_of(decode_all, args.repeat)
            eq16 = sum(sass_bits(s.numel, k, 1) for s, k in zip(specs, e.nnz)) + 32 * len(specs)
            print(f"{layout:<7}{alpha:>6.2f}{n / t_enc / 1e6:>14.1f}M/s{n / t_dec / 1e6:>12.1f}M/s"
                  f"{8 * e.total_bytes / n:>12.4f}{eq16 / n:>9.4f}{entropy_bits(e.density):>9.4f}{e.density:>9.4f}")
    print("# bits/param and Eq.16 include one float32 scale per tensor; H(d)+d is the i.i.d. entropy bound")


if __name__ == "__main__":
    main()
