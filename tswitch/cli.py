"""``python -m tswitch``: compress fine-tunes into a switch pack, inspect, decompress and merge it.

Every failure the user can cause (missing or corrupt files, a pack made for another base model,
shape mismatches, alpha outside [0, 1), unknown tasks) prints one line to stderr and exits with
status 2; outputs are written atomically, so a failed command leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple] = {}  # name -> (fill parser, run, help)


class UsageError(ValueError):
    """A malformed command-line value."""


def command(name: str, help: str, fill: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated function as sub-command ``name``; ``fill`` adds its arguments."""

    def register(run):
        COMMANDS[name] = (fill, run, help)
        return run

    return register


def parse_pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` items (also comma-separated) -> ordered pairs; duplicate names refused."""
    pairs = []
    for item in items:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name or not value:
                raise UsageError(f"{what} must look like NAME=VALUE, got {part!r}")
            pairs.append((name, value))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise UsageError(f"{what}: a name is given twice: {names}")
    return pairs


def _alpha(text: str) -> float:
    from .core.pspar import validate_alpha

    try:
        return validate_alpha(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be in [0, 1), got {text}") from None


# -- compress / add-task --------------------------------------------------------------------------
def _fill_compress(p: argparse.ArgumentParser, *, new: bool) -> None:
    if not new:
        p.add_argument("pack", help="existing .tsw pack to extend")
    p.add_argument("--pretrained", required=True, help="base model: .safetensors file or HF model folder")
    p.add_argument(
        "--finetuned",
        required=True,
        nargs="+",
        metavar="NAME=PATH",
        help="fine-tuned model(s) of the same architecture",
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
    from .codec.layouts import AUTO, LAYOUTS

    p.add_argument(
        "--layout",
        choices=[AUTO, *LAYOUTS],
        default=AUTO,
        help="payload layout of the switches; auto (default): per tensor the smallest (docs/FORMAT.md §3)",
    )


def _encode_all(args, pretrained, layout, alpha, specs):
    from .core.task_vector import TaskVector
    from .io import load_state_dict
    from .pack import encode_task

    encoded = []
    for name, path in parse_pairs(args.finetuned, "--finetuned"):
        tau = TaskVector.from_state_dicts(pretrained, load_state_dict(path))
        encoded.append(encode_task(name, tau, specs, alpha, layout, args.dense_pattern))
    return encoded


def _compress_parser(p):
    _fill_compress(p, new=True)


@command("compress", "compress fine-tuned models into a new .tsw switch pack", _compress_parser)
def run_compress(args) -> int:
    from .io import load_state_dict
    from .pack import create_pack, tensor_specs

    pretrained = load_state_dict(args.pretrained)
    tasks = _encode_all(args, pretrained, args.layout, args.alpha, tensor_specs(pretrained))
    header = create_pack(args.out, pretrained, tasks)
    print(f"wrote {args.out}: {len(header.tasks)} task(s), {os.path.getsize(args.out):,} bytes")
    return 0


def _add_parser(p):
    _fill_compress(p, new=False)


@command("add-task", "add fine-tuned model(s) to an existing pack (atomic rewrite)", _add_parser)
def run_add_task(args) -> int:
    from .io import load_state_dict
    from .pack import SwitchPack, add_task

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
    from .pack import SwitchPack
    from .report import format_report, pack_report

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
    from .pack import SwitchPack, repack

    if (args.pack is None) == (args.suite is None):
        raise UsageError("give either a pack or --suite")
    if args.suite is not None:
        from .suites.storage import repack_suite
        from .suites.suite import resolve_suite

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
    from .io import save_state_dict
    from .pack import SwitchPack

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
    from .io import load_state_dict, save_state_dict
    from .pack import SwitchPack

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
    delta = sum(w * pack.task_vector(name) for name, w in weights)
    save_state_dict(delta.apply_to(pretrained), args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{n}={w:g}" for n, w in weights))
    return 0


# -- route / eval -----------------------------------------------------------------------------------
def _route_parser(p):
    p.add_argument("--suite", required=True, help="a suite under assets/ or a suite folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--image", help="path of an image file")
    from .suites.methods import SERVED

    p.add_argument(
        "--method",
        default="auto-switch",
        choices=[n for n, m in SERVED.items() if m.routed],
        help="auto-flexswitch needs a suite with a FlexSwitch pack (python -m tswitch flex --collect)",
    )
    p.add_argument("-k", type=int, default=None, help="neighbours C (default: the suite's)")
    p.add_argument("--json", action="store_true")


@command("route", "route one input with Auto-Switch and print neighbours, task weights and prediction", _route_parser)
def run_route(args) -> int:
    from .inputs import check_text, load_image
    from .suites.suite import Suite

    suite = Suite.open(args.suite)
    router = suite.router_for(args.method).router  # a suite without the method says how to add it
    if args.k is not None and not 1 <= args.k <= router.num_exemplars:
        raise UsageError(f"-k must be in [1, {router.num_exemplars}], got {args.k}")
    if args.text is not None:
        if suite.modality != "text":
            raise UsageError(f"suite {suite.name} takes images (--image), not text")
        item = check_text(args.text)
    else:
        if suite.modality != "image":
            raise UsageError(f"suite {suite.name} takes text (--text), not images")
        item = load_image(args.image)
    result = suite.route([item], k=args.k, method=args.method)[0]
    out = {k: result[k] for k in ("routed_task", "weights", "neighbours", "prediction")}
    for n in out["neighbours"]:
        n.pop("exemplar_preview", None)
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"routed to {out['routed_task']}; weights " + ", ".join(f"{t}={w:.2f}" for t, w in out["weights"].items())
        )
        for label, p in out["prediction"].items():
            print(f"  {p:6.3f}  {label}")
    return 0


def _eval_parser(p):
    from .suites.methods import SERVED

    p.add_argument("--suite", required=True)
    p.add_argument(
        "--method",
        required=True,
        metavar="{" + ",".join(SERVED) + "}",
        help="a served method (flexswitch and auto-flexswitch need a suite with a FlexSwitch pack); "
        "the other methods of results.json need the fine-tuned checkpoints",
    )
    p.add_argument("--alpha", type=_alpha, default=None, help="must be the suite's alpha (its pack holds one)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=None, help="first N examples per task")
    p.add_argument("-k", type=int, default=None)
    p.add_argument("--json", action="store_true")


@command("eval", "recompute a switch-based method's metrics from a suite's committed files", _eval_parser)
def run_eval(args) -> int:
    from .suites.suite import Suite

    suite = Suite.open(args.suite)
    if args.alpha is not None and abs(args.alpha - float(suite.manifest.alpha or -1)) > 1e-12:
        raise UsageError(
            f"suite {suite.name} holds switches at alpha {suite.manifest.alpha} only "
            f"(other alphas are in its results.json alpha_grid)"
        )
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    res = suite.evaluate(args.method, args.split, args.limit, args.k)
    res = {"suite": suite.name, "method": args.method, "split": args.split, **res}
    if args.json:
        print(json.dumps(res))
    else:
        for t, v in res["per_task"].items():
            print(f"{t:<24}{v:8.4f}")
        print(
            f"{'average':<24}{res['average']:8.4f}   storage {res['extra_bytes']:,} B"
            + (f"   routing {res['routing_accuracy']:.4f}" if "routing_accuracy" in res else "")
        )
    return 0


# -- flex -------------------------------------------------------------------------------------------
def _flex_parser(p):
    from .flex.losses import LOSSES
    from .flex.train import MODES

    p.add_argument("--suite", required=True, help="a built suite under assets/ or a suite folder")
    p.add_argument("--loss", default="kl", choices=sorted(LOSSES), help="performance-preservation loss (Eq. 9-11)")
    p.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=None,
        help="its weight (default: the journal's, KL 0.3 / MSE 0.05 / CKA 3)",
    )
    p.add_argument(
        "--mode", default="lgs+bas", choices=MODES, help="lgs+bas = FlexSwitch; lgs, bas = the Tab. XI ablations"
    )
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--exemplars", type=int, default=100, help="N per task")
    p.add_argument("--alpha", type=_alpha, default=0.7, help="P-Spar pruning rate of --mode bas")
    p.add_argument("--task", action="append", default=None, help="train only this task (repeatable; no router)")
    p.add_argument("--eval", default="test", choices=["val", "test", "none"], help="split to evaluate on")
    p.add_argument("--limit", type=int, default=None, help="first N examples per task when evaluating")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: evaluate every flex-*.tsw run in the suite folder on --eval's split, write "
        "the results.json 'flex' block (Tab. XI ablation, storage, routing cost) and serve the "
        "main run (flex-kl) as FlexSwitch / Auto-FlexSwitch (manifest 'flex')",
    )


@command(
    "flex",
    "learn FlexSwitch switches (journal Eq. 6-17) and the Auto-FlexSwitch router for a built suite",
    _flex_parser,
)
def run_flex_command(args) -> int:
    import torch

    from .flex.train import FlexConfig
    from .suites.flex_run import run_flex, summary_lines
    from .suites.suite import Suite

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.exemplars < 1 or (args.limit is not None and args.limit < 1):
        raise UsageError("--exemplars and --limit must be >= 1")
    suite = Suite.open(args.suite)
    if args.collect:
        return _flex_collect(suite, args)
    config = FlexConfig(
        mode=args.mode,
        loss=args.loss,
        lam=args.lam,
        steps=args.steps,
        batch_size=args.batch_size,
        alpha=args.alpha,
        seed=args.seed,
    )
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    log = tqdm.write if tqdm else print
    report = run_flex(
        suite,
        config,
        exemplars=args.exemplars,
        tasks=args.task,
        eval_split=None if args.eval == "none" else args.eval,
        eval_limit=args.limit,
        log=log,
        progress=tqdm,
    )
    print("\n".join(summary_lines(report)))
    return 0


def _flex_collect(suite, args) -> int:
    from .suites import flex_results

    if args.eval == "none":
        raise UsageError("--collect evaluates: give --eval val or --eval test")
    block = flex_results.collect(suite, split=args.eval, main=f"flex-{args.loss}", limit=args.limit)
    flex_results.write(suite, block)
    for line in flex_results.summary_lines(block):
        print(line)
    return 0


# -- entry point ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, like every other user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tswitch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (fill, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        fill(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # progress bars of weight loading would break the one-line-on-stderr contract of errors
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported before us (e.g. by a host program): switch it off there
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (status 0)
        return int(exc.code or 0)
    try:
        return args.run(args)
    except (ValueError, OSError) as exc:  # PackError, WeightsError, UsageError are ValueErrors
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tswitch {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tswitch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
