"""Commands on built suites: route, eval, flex (need the suites' extras)."""

from __future__ import annotations

import json

from .base import UsageError, _alpha, command


# -- route / eval -----------------------------------------------------------------------------------
def _route_parser(p):
    p.add_argument("--suite", required=True, help="a suite under assets/ or a suite folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--image", help="path of an image file")
    from ..suites.methods import SERVED

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
    from ..inputs import check_text, load_image
    from ..suites.suite import Suite

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
    from ..suites.methods import SERVED

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
    p.add_argument(
        "--route-layers",
        type=_depth,
        default=_SERVED_DEPTH,
        metavar="L",
        help="auto-switch only: route on the first L layers' features ('full': all), the router rebuilt "
        "from the suite's exemplars (default: the suite's own router)",
    )
    p.add_argument(
        "--dense-mib",
        type=int,
        default=None,
        metavar="MIB",
        help="decoded float32 deltas the engine may hold (default 2048: routed methods take each batch in one "
        "multi-tenant forward; 0: keep the switches packed, as the app does: slower, less memory)",
    )
    p.add_argument("--json", action="store_true")


_SERVED_DEPTH = object()


@command("eval", "recompute a switch-based method's metrics from a suite's committed files", _eval_parser)
def run_eval(args) -> int:
    from ..suites.evaluate import EVAL_DENSE_BYTES
    from ..suites.suite import Suite

    if args.dense_mib is not None and args.dense_mib < 0:
        raise UsageError(f"--dense-mib must be >= 0, got {args.dense_mib}")
    dense = EVAL_DENSE_BYTES if args.dense_mib is None else args.dense_mib << 20
    suite = Suite.open(args.suite, dense_bytes=dense)
    if args.alpha is not None and abs(args.alpha - float(suite.manifest.alpha or -1)) > 1e-12:
        raise UsageError(
            f"suite {suite.name} holds switches at alpha {suite.manifest.alpha} only "
            f"(other alphas are in its results.json alpha_grid)"
        )
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    extra = {}
    if args.route_layers is not _SERVED_DEPTH:
        from ..suites.route_depth import at_depth

        if args.method != "auto-switch":
            raise UsageError(f"--route-layers applies to auto-switch only, not {args.method}")
        suite = at_depth(suite, args.route_layers)
        extra = {"route_layers": args.route_layers}
    res = suite.evaluate(args.method, args.split, args.limit, args.k)
    res = {"suite": suite.name, "method": args.method, "split": args.split, **extra, **res}
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


def _confusion_parser(p):
    from ..suites.methods import SERVED

    p.add_argument("--suite", required=True)
    p.add_argument("--method", default="auto-switch", choices=[n for n, m in SERVED.items() if m.routed])
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("-k", type=int, default=None, help="neighbours C (default: the suite's)")
    p.add_argument("--save", action="store_true", help="store it in results.json (routing_confusion.METHOD)")
    p.add_argument("--json", action="store_true")


@command("confusion", "where the router sends each task's items (task x task counts, routing only)", _confusion_parser)
def run_confusion(args) -> int:
    from ..suites.suite import Suite

    suite = Suite.open(args.suite)
    router = suite.router_for(args.method).router
    if args.k is not None and not 1 <= args.k <= router.num_exemplars:
        raise UsageError(f"-k must be in [1, {router.num_exemplars}], got {args.k}")
    res = suite.routing_confusion(args.split, args.k, args.method)
    if args.save:
        from ..suites.write import write_results

        results = suite.results()
        results.setdefault("routing_confusion", {})[args.method] = res
        write_results(suite.path, results)
    if args.json:
        print(json.dumps(res))
        return 0
    tasks = res["tasks"]
    width = max(map(len, tasks)) + 2
    print(f"{args.method}, C = {res['k']}, {args.split}: rows = true task, columns = routed task (% of the row)")
    print(" " * width + "".join(f"{i:>6}" for i in range(len(tasks))))
    for i, (t, row) in enumerate(zip(tasks, res["matrix"])):
        n = max(1, sum(row))
        print(f"{i} {t:<{width - 2}}" + "".join(f"{100 * v / n:6.1f}" for v in row))
    print(f"routing accuracy {res['accuracy']:.4f}")
    return 0


def _depth(text: str) -> int | None:
    if text == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"a depth is a layer count >= 0 or 'full', got {text!r}") from None
    if value < 0:
        raise UsageError(f"a depth is a layer count >= 0 or 'full', got {text!r}")
    return value


def _route_depth_parser(p):
    p.add_argument("--suite", required=True)
    p.add_argument(
        "--depths",
        nargs="+",
        type=_depth,
        default=[0, 1, 2, 3, None],
        help="layers L, or 'full' (default: 0 1 2 3 full)",
    )
    p.add_argument("--split", nargs="+", default=["val", "test"], choices=["train", "val", "test"])
    p.add_argument("-k", type=int, default=None, help="neighbours C (default: the suite's)")
    p.add_argument("--limit", type=int, default=None, help="at most this many items per task and split")
    p.add_argument("--json", action="store_true")


@command(
    "route-depth",
    "routing accuracy of a k-NN router over the suite's exemplars at each feature depth (routing only)",
    _route_depth_parser,
)
def run_route_depth(args) -> int:
    from ..suites.route_depth import routing_by_depth
    from ..suites.suite import Suite

    suite = Suite.open(args.suite)
    if args.k is not None and not 1 <= args.k <= suite.router.num_exemplars:
        raise UsageError(f"-k must be in [1, {suite.router.num_exemplars}], got {args.k}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    try:
        res = routing_by_depth(suite, args.depths, args.split, args.k, args.limit)
    except ValueError as e:  # a depth beyond the backbone's layers
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(res))
        return 0
    served = res["served_depth"]
    print(f"{suite.name}: k-NN over {res['exemplars_per_task']} exemplars per task, C = {res['k']}, {res['metric']}")
    print("depth   " + "".join(f"{s:>8}" for s in args.split))
    for row in res["rows"]:
        name = "full" if row["depth"] is None else str(row["depth"])
        mark = "  (served)" if row["depth"] == served else ""
        print(f"{name:<8}" + "".join(f"{100 * row[s]:7.1f}%" for s in args.split) + mark)
    return 0


# -- flex -------------------------------------------------------------------------------------------
def _flex_parser(p):
    from ..flex.losses import LOSSES
    from ..flex.train import MODES

    p.add_argument("--suite", required=True, help="a built suite under assets/ or a suite folder")
    p.add_argument(
        "--loss",
        default=None,
        choices=sorted(LOSSES),
        help="performance-preservation loss (Eq. 9-11; default kl, or with --collect --eval test the run "
        "that validation chose, lambda-val.json)",
    )
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
        "--no-resume",
        action="store_true",
        help="train every task again instead of reusing its finished run with the same settings "
        "(kept under ~/.cache/tswitch/SUITE/flex/); with --collect, evaluate every run again instead of "
        "reusing the last collect's evaluations whose files (pack, heads, splits, routers) are unchanged",
    )
    p.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: evaluate every flex-*.tsw run in the suite folder on --eval's split. "
        "On val: write lambda-val.json with the lambda chosen per loss and across losses (A16). On test: "
        "write the results.json 'flex' block (Tab. XI ablation, storage, routing cost) and serve "
        "the main run (flex-<loss>[-lam<lambda>] from --loss/--lambda, else validation's choice, else "
        "flex-kl) as FlexSwitch / Auto-FlexSwitch (manifest 'flex')",
    )


@command(
    "flex",
    "learn FlexSwitch switches (journal Eq. 6-17) and the Auto-FlexSwitch router for a built suite",
    _flex_parser,
)
def run_flex_command(args) -> int:
    import torch

    from ..flex.train import FlexConfig
    from ..suites.flex_run import run_flex, summary_lines
    from ..suites.suite import Suite

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
        loss=args.loss or "kl",
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
        resume=not args.no_resume,
    )
    print("\n".join(summary_lines(report)))
    return 0


def _flex_collect(suite, args) -> int:
    from ..suites import flex_lambda, flex_report, flex_results, flex_reuse

    if args.eval == "none":
        raise UsageError("--collect evaluates: give --eval val or --eval test")
    from ..flex.train import FlexConfig
    from ..suites.flex_run import run_stem

    chosen = None
    if args.eval == "test" and args.loss is None and args.lam is None:
        try:
            chosen = flex_lambda.chosen_run(suite)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if chosen:
        main = chosen
        print(f"serving {main}: validation's choice ({flex_lambda.VAL_FILE})")
    else:
        main = run_stem(FlexConfig(mode="lgs+bas", loss=args.loss or "kl", lam=args.lam))
    previous = None if args.no_resume else flex_reuse.previous_block(suite, args.eval)
    # validation chooses lambda among the FlexSwitch (lgs+bas) runs only (A16); the ablations are test rows
    modes = ("lgs+bas",) if args.eval == "val" else None
    block = flex_results.collect(suite, split=args.eval, main=main, limit=args.limit, previous=previous, modes=modes)
    if args.eval == "val":
        try:
            data = flex_lambda.write_validation(suite, block, args.limit)
        except ValueError as e:
            raise UsageError(str(e)) from None
        for line in flex_report.choice_lines(data["choice"]):
            print(line)
        return 0
    flex_results.write(suite, block)
    for line in flex_report.summary_lines(block):
        print(line)
    return 0
