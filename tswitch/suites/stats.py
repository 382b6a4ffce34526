"""Uncertainty and relative scores of a results table (``../shared/PROTOCOL.md``, "Splits and reporting").

- :func:`wilson`: the 95% Wilson score interval of one task's accuracy ``k / n``;
- :func:`bootstrap_average`: the 95% interval of the average over tasks, resampling each task's test
  items with replacement. For 0/1 outcomes a resample's accuracy is exactly ``Binomial(n, k/n) / n``,
  so the bootstrap is drawn from that (same distribution, no per-item vectors needed);
- :func:`relative`: normalized accuracy ``m / Individual`` (TALL, FusionBench) and the gain retained
  ``(m - Pre-trained) / (Individual - Pre-trained)``;
- :func:`tie`: two averages tie when either one lies inside the other's interval.

Pure functions of counts; the one random draw takes an explicit seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_DRAWS = 4000


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k <= 0 else lo), (1.0 if k >= n else hi)  # the exact ends, free of rounding


def bootstrap_average(
    accuracy: Mapping[str, float], n: Mapping[str, int], draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean over tasks of per-task accuracies, resampling items."""
    tasks = [t for t in accuracy if n.get(t, 0) > 0]
    if not tasks:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    sums = np.zeros(draws)
    for t in tasks:
        sums += rng.binomial(n[t], min(1.0, max(0.0, accuracy[t])), size=draws) / n[t]
    means = sums / len(tasks)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def intervals(row: Mapping, n: Mapping[str, int], seed: int = 0) -> dict:
    """``{"n", "ci", "average_ci"}`` for a method row ``{"per_task": {task: accuracy}, ...}``."""
    per_task = row["per_task"]
    counts = {t: int(n[t]) for t in per_task if t in n}
    return {
        "n": counts,
        "ci": {t: list(wilson(per_task[t] * counts[t], counts[t])) for t in counts},
        "average_ci": list(bootstrap_average(per_task, counts, seed=seed)),
    }


def relative(average: float, pretrained: float, individual: float) -> dict:
    """``{"normalized", "gain_retained"}`` of an average against the two references (``None`` when
    undefined: Individual at 0, or no gain from fine-tuning)."""
    gain = individual - pretrained
    return {
        "normalized": average / individual if individual > 0 else None,
        "gain_retained": (average - pretrained) / gain if abs(gain) > 1e-12 else None,
    }


def annotate(results: dict, n: Mapping[str, int]) -> dict:
    """Every row of ``results["methods"]`` with its intervals and relative scores added (a new dict)."""
    methods = results["methods"]
    pre = methods.get("pretrained", {}).get("average")
    ind = methods.get("individual", {}).get("average")
    out = {}
    for name, row in methods.items():
        extra = intervals(row, n) if "per_task" in row else {}
        if pre is not None and ind is not None and "average" in row:
            extra.update(relative(row["average"], pre, ind))
        out[name] = {**row, **extra}
    return {**results, "methods": out}


def split_sizes(manifest, split: str = "test") -> dict[str, int]:
    """Items per task in ``split``, as the builder recorded them (``tasks[].split_sizes``; ``{}`` if not)."""
    sizes = {}
    for task in manifest.tasks:
        n = (task.extra.get("split_sizes") or {}).get(split)
        if n:
            sizes[task.name] = int(n)
    return sizes if len(sizes) == len(manifest.tasks) else {}


def test_sizes(manifest) -> dict[str, int]:
    """Test items per task, as the builder recorded them (``tasks[].split_sizes.test``; ``{}`` if not)."""
    return split_sizes(manifest, "test")


def tie(a: Mapping, b: Mapping) -> bool:
    """Whether two rows' averages are a tie: either average lies within the other's 95% interval."""
    (alo, ahi), (blo, bhi) = a["average_ci"], b["average_ci"]
    return alo <= b["average"] <= ahi or blo <= a["average"] <= bhi
