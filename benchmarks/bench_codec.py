"""Codec size and speed: every layout beside journal Eq. 16 and the entropy bound.

    python -m benchmarks.bench_codec [--alpha 0.5 0.7 0.9 0.97 0.99] [--layout sass bitmap golomb auto]
                                     [--repeat 3] [--suites assets/text-minilm assets/vision-effnet]

Part 1, a synthetic CLIP ViT-B/32 vision tower (87.8M parameters, Laplace task vector): per layout
and alpha, compress + encode and decode -> dense float32 in parameters per second (best of
``--repeat``), and bits per parameter (payloads + one float32 scale per tensor) next to Eq. 16 and
the i.i.d. bound ``H(d) + d`` (a mask of density ``d`` needs ``H(d)`` bits per entry, each kept
entry one polarity bit).

Part 2, the real switches of the suites' packs: every task of every ``.tsw`` re-encoded in each
layout from its stored masks and codes, against the bound taken per tensor at its own density
(``n H(d) + nnz b``). Measured numbers only; nothing is assumed.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import torch


def vit_b32_vision_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor shapes of open_clip / OpenAI CLIP ViT-B/32's visual tower (87.8M parameters)."""
    w, layers, mlp, patch, tokens, out = 768, 12, 3072, 32, 50, 512
    shapes = {
        "conv1.weight": (w, 3, patch, patch),
        "class_embedding": (w,),
        "positional_embedding": (tokens, w),
        "ln_pre.weight": (w,),
        "ln_pre.bias": (w,),
    }
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        shapes.update(
            {
                p + "ln_1.weight": (w,),
                p + "ln_1.bias": (w,),
                p + "attn.in_proj_weight": (3 * w, w),
                p + "attn.in_proj_bias": (3 * w,),
                p + "attn.out_proj.weight": (w, w),
                p + "attn.out_proj.bias": (w,),
                p + "ln_2.weight": (w,),
                p + "ln_2.bias": (w,),
                p + "mlp.c_fc.weight": (mlp, w),
                p + "mlp.c_fc.bias": (mlp,),
                p + "mlp.c_proj.weight": (w, mlp),
                p + "mlp.c_proj.bias": (w,),
            }
        )
    shapes.update({"ln_post.weight": (w,), "ln_post.bias": (w,), "proj": (w, out)})
    return shapes


def entropy_per_param(d: float) -> float:
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


def synthetic(args) -> None:
    from tswitch.codec.sass import sass_bits
    from tswitch.core.task_vector import TaskVector
    from tswitch.pack import decode_dense, encode_task, tensor_specs

    g = torch.Generator().manual_seed(0)
    shapes = vit_b32_vision_shapes()
    base = {k: torch.zeros(s) for k, s in shapes.items()}
    # Task vectors are heavy-tailed around 0; a Laplace sample stands in for a real fine-tune.
    laplace = torch.distributions.Laplace(0.0, 1e-4)
    tau = TaskVector({k: laplace.sample(s) for k, s in shapes.items()})
    del g
    specs = tensor_specs(base)
    n = sum(s.numel for s in specs)
    print(
        f"# synthetic ViT-B/32 vision tower: {n:,} params in {len(specs)} tensors; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{'layout':<7}{'alpha':>6}{'compress+encode':>18}{'decode->dense':>16}{'bits/param':>12}"
        f"{'Eq.16':>9}{'H(d)+d':>9}{'/bound':>8}{'density':>9}"
    )
    for layout in args.layout:
        for alpha in args.alpha:
            t_enc, task = best_of(lambda: encode_task("t", tau, specs, alpha, layout), args.repeat)  # noqa: B023 - runs here
            e = task.entry

            def decode_all(task=task, e=e):
                jobs = list(zip(task.payloads, specs, e.encodings, task.scales))
                with ThreadPoolExecutor(2) as pool:
                    return list(pool.map(lambda a: decode_dense(a[0], a[1], a[2], 1, float(a[3])), jobs))

            t_dec, _ = best_of(decode_all, args.repeat)
            eq16 = sum(sass_bits(s.numel, k, 1) for s, k in zip(specs, e.nnz)) + 32 * len(specs)
            bits = 8 * e.total_bytes / n
            bound = entropy_per_param(e.density)
            print(
                f"{layout:<7}{alpha:>6.2f}{n / t_enc / 1e6:>14.1f}M/s{n / t_dec / 1e6:>12.1f}M/s"
                f"{bits:>12.4f}{eq16 / n:>9.4f}{bound:>9.4f}{bits / bound:>8.4f}{e.density:>9.4f}"
            )
    print("# bits/param and Eq.16 include one float32 scale per tensor; H(d)+d is the i.i.d. entropy bound")


def real_switches(folders: list[str], layouts: list[str]) -> None:
    """Re-encode the stored switches of every pack under ``folders`` in each layout."""
    from tswitch.codec import container
    from tswitch.codec.layouts import entropy_bits, get_layout
    from tswitch.pack import DENSE, QUANTISED, SwitchPack

    names = [lay for lay in layouts if lay != "auto"]
    print(
        "\n# real switches: bytes of the switch payloads (no scales, codebooks or dense tensors) per layout,"
        " / the per-tensor bound sum(n H(nnz/n) + nnz b)"
    )
    print(
        f"{'pack':<44}{'task':<18}{'params':>11}{'density':>9}"
        + "".join(f"{x:>10}" for x in names)
        + f"{'auto':>10}{'bound B':>12}{'stored B':>12}"
    )
    totals = {x: 0 for x in names + ["auto", "bound"]}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*.tsw"))):
            pack = SwitchPack(path)
            for entry in pack.header.tasks:
                payloads, _, _ = container.read_task(path, pack.header, entry.name)
                bits = entry.widths
                sizes = {x: 0 for x in names + ["auto"]}
                bound = stored = params = kept = 0
                for payload, spec, enc, b, nnz in zip(payloads, pack.header.tensors, entry.encodings, bits, entry.nnz):
                    if enc == DENSE:
                        continue
                    mask, _ = get_layout(QUANTISED.get(enc, enc)).decode(payload, spec.numel, b)
                    row = {x: get_layout(x).size(mask, b) for x in names}
                    for x in names:
                        sizes[x] += row[x]
                    sizes["auto"] += min(get_layout(x).size(mask, b) for x in ("sass", "bitmap", "golomb"))
                    bound += math.ceil(entropy_bits(spec.numel, nnz, b) / 8)
                    stored += len(payload)
                    params += spec.numel
                    kept += nnz
                for x in sizes:
                    totals[x] += sizes[x]
                totals["bound"] += bound
                label = os.path.relpath(path)
                print(
                    f"{label[-44:]:<44}{entry.name[:17]:<18}{params:>11,}{kept / max(1, params):>9.4f}"
                    + "".join(f"{sizes[x] / bound:>10.4f}" for x in names)
                    + f"{sizes['auto'] / bound:>10.4f}{bound:>12,}{stored:>12,}"
                )
    if totals["bound"]:
        print(
            "# all packs: "
            + ", ".join(f"{x} {totals[x]:,} B ({totals[x] / totals['bound']:.4f} x bound)" for x in names + ["auto"])
            + f"; bound {totals['bound']:,} B"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.97, 0.99])
    parser.add_argument("--layout", nargs="+", default=["sass", "bitmap", "golomb", "auto"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--suites",
        nargs="*",
        default=None,
        help="suite folders whose .tsw packs to re-encode (default: every folder in assets/)",
    )
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if not args.skip_synthetic:
        synthetic(args)
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
    folders = (
        args.suites
        if args.suites is not None
        else sorted(d for d in glob.glob(os.path.join(root, "*")) if glob.glob(os.path.join(d, "*.tsw")))
    )
    if folders:
        real_switches(folders, args.layout)


if __name__ == "__main__":
    main()
