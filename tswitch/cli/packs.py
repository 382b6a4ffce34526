"""Commands on packs: compress, add-task, inspect, repack, decompress, merge (the core install)."""

from __future__ import annotations

import argparse
import json
import os

from .base import UsageError, _alpha, command, parse_pairs


# -- compress / add-task --------------------------------------------------------------------------
def _fill_compress(p: argparse.ArgumentParser, *, new: bool) -> None:
    if not new:
        p.add_argument("pack", help="existing .tsw pack to extend")
    p.add_argument("--pretrained", required=new, help="base model: .safetensors file or HF model folder")
    p.add_argument(
        "--finetuned",
        required=new,
        nargs="+",
        metavar="NAME=PATH",
        help="fine-tuned model(s) of the same architecture",
    )
    if not new:
        p.add_argument(
            "--switches",
            default=None,
            metavar="TSW",
            help="instead of --pretrained/--finetuned: copy the tasks of this pack (same base model), as stored",
        )
    p.add_argument(
        "--alpha",
        type=_alpha,
        required=new,
        default=None,
        help="pruning rate (fraction of each sign dropped), in [0, 1)",
    )
    if new:
        _layout_arg(p)
        p.add_argument("--out", required=True, help="output .tsw pack")
    p.add_argument(
        "--dense-pattern",
        default=None,
        metavar="REGEX",
        help="keep tensors whose name matches REGEX dense (float16) instead of binarised",
    )


def _layout_arg(p: argparse.ArgumentParser) -> None:
    from ..codec.layouts import AUTO, LAYOUTS

    p.add_argument(
        "--layout",
        choices=[AUTO, *LAYOUTS],
        default=AUTO,
        help="payload layout of the switches; auto (default): per tensor the smallest (docs/FORMAT.md §3)",
    )


def _encode_all(args, pretrained, layout, alpha, specs):
    from ..core.task_vector import TaskVector
    from ..io import load_state_dict
    from ..pack import encode_task

    encoded = []
    for name, path in parse_pairs(args.finetuned, "--finetuned"):
        tau = TaskVector.from_state_dicts(pretrained, load_state_dict(path))
        encoded.append(encode_task(name, tau, specs, alpha, layout, args.dense_pattern))
    return encoded


def _compress_parser(p):
    _fill_compress(p, new=True)


@command("compress", "compress fine-tuned models into a new .tsw switch pack", _compress_parser)
def run_compress(args) -> int:
    from ..io import load_state_dict
    from ..pack import create_pack, tensor_specs

    pretrained = load_state_dict(args.pretrained)
    tasks = _encode_all(args, pretrained, args.layout, args.alpha, tensor_specs(pretrained))
    header = create_pack(args.out, pretrained, tasks)
    print(f"wrote {args.out}: {len(header.tasks)} task(s), {os.path.getsize(args.out):,} bytes")
    return 0


def _add_parser(p):
    _fill_compress(p, new=False)


@command("add-task", "add fine-tuned model(s) to an existing pack (atomic rewrite)", _add_parser)
def run_add_task(args) -> int:
    from ..io import load_state_dict
    from ..pack import SwitchPack, add_task, add_tasks_from

    if args.switches is not None:
        if args.pretrained or args.finetuned or args.alpha is not None or args.dense_pattern:
            raise UsageError("--switches copies stored switches: give it without --pretrained/--finetuned/--alpha")
        header = add_tasks_from(args.pack, args.switches)
        print(f"wrote {args.pack}: {len(header.tasks)} task(s), {os.path.getsize(args.pack):,} bytes")
        return 0
    if not args.pretrained or not args.finetuned:
        raise UsageError("give --pretrained and --finetuned (or --switches PACK)")
    pack = SwitchPack(args.pack)
    pretrained = load_state_dict(args.pretrained)
    pack.check_base(pretrained)
    first = pack.header.tasks[0] if pack.header.tasks else None
    alpha = args.alpha if args.alpha is not None else (first.alpha if first else None)
    if alpha is None:
        raise UsageError("--alpha is required: the pack has no task to copy it from")
    layout = first.layout if first else "auto"
    # encode in the pack's tensor order, whatever order the given base model lists them in
    for task in _encode_all(args, pretrained, layout, alpha, pack.header.tensors):
        header = add_task(args.pack, pretrained, task)
    print(f"wrote {args.pack}: {len(header.tasks)} task(s), {os.path.getsize(args.pack):,} bytes")
    return 0


# -- inspect ----------------------------------------------------------------------------------------
def _inspect_parser(p):
    p.add_argument("pack")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tensors", action="store_true", help="text mode: also print the per-tensor breakdown")


@command("inspect", "show tasks, density, bits per parameter and bytes of a pack", _inspect_parser)
def run_inspect(args) -> int:
    from ..pack import SwitchPack
    from ..report import format_report, pack_report

    report = pack_report(SwitchPack(args.pack))
    print(json.dumps(report, indent=1) if args.json else format_report(report, tensors=args.tensors))
    return 0


# -- repack ------------------------------------------------------------------------------------------
def _repack_parser(p):
    p.add_argument("pack", nargs="?", help="a .tsw pack (or give --suite)")
    p.add_argument("--suite", default=None, help="repack every pack of a built suite and update its results.json")
    _layout_arg(p)
    p.add_argument("--out", default=None, help="output .tsw pack (default: rewrite PACK in place, atomically)")


@command("repack", "rewrite a pack's switches in another layout, losslessly (default: the smallest)", _repack_parser)
def run_repack(args) -> int:
    from ..pack import SwitchPack, repack

    if (args.pack is None) == (args.suite is None):
        raise UsageError("give either a pack or --suite")
    if args.suite is not None:
        from ..suites.storage import repack_suite
        from ..suites.suite import resolve_suite

        if args.out is not None:
            raise UsageError("--out goes with a pack, not with --suite")
        storage = repack_suite(resolve_suite(args.suite), args.layout)
        for stem, p in storage["packs"].items():
            print(
                f"{stem}.tsw: {p['bytes_before']:,} B as built -> {p['bytes']:,} B "
                f"(SASS {p['sass_bytes']:,} B, bound {p['bound_bytes']:,} B)"
            )
        return 0
    before = sum(t.total_bytes for t in SwitchPack(args.pack).header.tasks)
    header = repack(args.pack, args.out, args.layout)
    after = sum(t.total_bytes for t in header.tasks)
    out = args.out or args.pack
    print(
        f"wrote {out}: {len(header.tasks)} task(s), switches {before:,} -> {after:,} bytes "
        f"({100 * (after - before) / max(1, before):+.1f}%), format v{header.format_version}"
    )
    return 0


# -- decompress / merge -----------------------------------------------------------------------------
def _decompress_parser(p):
    p.add_argument("pack")
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True, help="output .safetensors")


@command(
    "decompress", "write one task's reconstructed task vector (scale * mask * sign) as safetensors", _decompress_parser
)
def run_decompress(args) -> int:
    from ..io import save_state_dict
    from ..pack import SwitchPack

    pack = SwitchPack(args.pack)
    tv = pack.task_vector(args.task)
    save_state_dict(dict(tv.items()), args.out, metadata={"tswitch_task": args.task})
    print(f"wrote {args.out}: task {args.task}, {len(tv)} tensors, {tv.numel:,} params")
    return 0


def _merge_parser(p):
    p.add_argument("--pretrained", required=True)
    p.add_argument("--pack", required=True)
    p.add_argument("--weights", required=True, nargs="+", metavar="NAME=W[,NAME=W...]")
    p.add_argument("--out", required=True, help="output .safetensors")


@command("merge", "merge switches into the base model with explicit task weights (T-Switch Eq. 7)", _merge_parser)
def run_merge(args) -> int:
    from ..io import load_state_dict, save_state_dict
    from ..pack import SwitchPack

    weights = []
    for name, value in parse_pairs(args.weights, "--weights"):
        try:
            weights.append((name, float(value)))
        except ValueError:
            raise UsageError(f"--weights: {value!r} is not a number") from None
    pack = SwitchPack(args.pack)
    for name, _ in weights:
        pack.task(name)  # unknown task names fail before any heavy work
    pretrained = load_state_dict(args.pretrained)
    pack.check_base(pretrained)
    # theta = theta_0 + sum_k w_k * scale_k * mask_k ⊙ sign_k   (T-Switch Eq. 7, journal Eq. 5)
    scaled = [pack.task_vector(name) * w for name, w in weights]
    delta = scaled[0]
    for tv in scaled[1:]:
        delta = delta + tv
    save_state_dict(delta.apply_to(pretrained), args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{n}={w:g}" for n, w in weights))
    return 0
