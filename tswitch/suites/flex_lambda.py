"""λ chosen on validation among a suite's FlexSwitch runs (docs/FLEXSWITCH.md A16).

``python -m tswitch flex --suite S --collect --eval val`` evaluates the runs on validation
(:func:`tswitch.suites.flex_results.collect`); :func:`write_validation` stores that block with the
choice of :func:`choose_lambda` as ``lambda-val.json``, and :func:`chosen_run` is what a later test
collect serves.
"""

from __future__ import annotations

import json
import os

from .files import FLEX_VAL_FILE, write_json
from .stats import bootstrap_average, split_sizes

VAL_FILE = FLEX_VAL_FILE


def tswitch_row(results: dict, alpha: float | None, split: str) -> dict | None:
    """T-Switch's row on ``split`` at ``alpha`` under the suite's chosen dense option (``alpha_grid``;
    ``None`` when the grid lacks it)."""
    choice = results.get("choice", {})
    grid = results.get("alpha_grid", {}).get(choice.get("dense_option"), {})
    for key, row in grid.items():
        if alpha is not None and abs(float(key) - float(alpha)) < 1e-9:
            return row.get("t-switch", {}).get(split)
    return None


def choose_lambda(block: dict, reference: dict, n: dict[str, int]) -> dict:
    """A16: per loss, the FlexSwitch (LGS + BAS) run with the fewest bytes whose average on the
    block's split lies within or above T-Switch's 95% interval on that split; then, across losses,
    the fewest bytes among those picks. A loss with no such run keeps its most accurate run, marked
    ``within: False``, and is picked across losses only when no loss has a run within.

    Args:
        block: a ``flex`` block from :func:`collect` (on validation: choosing on test is tuning on it).
        reference: T-Switch's row on the same split (``{"per_task": ..., "average": ...}``).
        n: items per task on that split (the interval's sample sizes).
    """
    lo, hi = bootstrap_average(reference["per_task"], n)
    per_loss: dict[str, dict] = {}
    for stem, run in sorted(block["runs"].items()):
        if run.get("mode") != "lgs+bas" or "flexswitch" not in run:
            continue
        entry = {
            "run": stem,
            "lambda": run["lambda"],
            "bytes": run["bytes"],
            "average": run["flexswitch"]["average"],
            "within": run["flexswitch"]["average"] >= lo,
        }
        best = per_loss.get(run["loss"])
        if best is None or _rank(entry) < _rank(best):
            per_loss[run["loss"]] = entry
    chosen = min(per_loss.values(), key=_rank, default=None)
    return {
        "split": block["split"],
        "rule": "fewest bytes with average >= T-Switch's 95% interval low end, per loss, then across losses",
        "reference": {"average": reference["average"], "average_ci": [lo, hi]},
        "losses": per_loss,
        "chosen": chosen["run"] if chosen else None,
    }


def _rank(entry: dict) -> tuple[bool, float]:
    """Smaller is better: within the interval before outside; among within, fewer bytes; among
    outside, more accurate."""
    return (not entry["within"], entry["bytes"] if entry["within"] else -entry["average"])


def write_validation(suite, block: dict, limit: int | None = None) -> dict:
    """Store a validation ``flex`` block and the lambda chosen from it as ``VAL_FILE`` in the suite
    folder (atomically); ``results.json`` and the manifest are left alone. Returns the file's dict."""
    results = suite.results()
    reference = tswitch_row(results, results.get("choice", {}).get("alpha"), block["split"])
    if reference is None:
        raise ValueError(
            f"{suite.name}: results.json has no T-Switch row on {block['split']!r} at the chosen alpha "
            "to choose lambda against"
        )
    sizes = {t: min(k, limit) if limit else k for t, k in split_sizes(suite.manifest, block["split"]).items()}
    if not sizes:
        raise ValueError(f"{suite.name}: the manifest does not record the {block['split']!r} split's sizes")
    data = {
        "note": (
            f"FlexSwitch runs of {suite.name} on the {block['split']} split "
            f"(python -m tswitch flex --suite {suite.name} --collect --eval {block['split']}); "
            "'choice' is the run the test collect serves (docs/FLEXSWITCH.md A16)"
        ),
        "t-switch_val": reference,
        "choice": choose_lambda(block, reference, sizes),
        "flex": block,
    }
    write_json(suite.file(VAL_FILE), data)
    return data


def chosen_run(suite) -> str | None:
    """The run validation chose (``VAL_FILE``'s ``choice.chosen``), or ``None`` without the file.

    Raises:
        ValueError: the file is unreadable, or names a run whose files are no longer in the folder.
    """
    path = suite.file(VAL_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            chosen = (json.load(f).get("choice") or {}).get("chosen")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} is not a readable validation file ({e}); run --collect --eval val again") from None
    if chosen is not None and not all(os.path.isfile(suite.file(f"{chosen}{ext}")) for ext in (".json", ".tsw")):
        raise ValueError(
            f"{VAL_FILE} chose {chosen}, which is no longer in {suite.path}; run --collect --eval val again"
        )
    return chosen
