"""The served methods: one registry entry per method a suite can serve and recompute from its files.

Each :class:`ServedMethod` says whether a suite serves it (from its manifest), how it is evaluated
(:mod:`tswitch.suites.evaluate`), whether it routes every input and, if so, which pipeline and
which C. :class:`tswitch.suites.suite.Suite`, the CLI (``eval``/``route`` choices), the app (the
routers it offers, their labels and C) and the results tables all read :data:`SERVED`; adding a
served method is one :func:`register` call here plus its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifest import Manifest
    from .suite import Suite


@dataclass(frozen=True)
class ServedMethod:
    """A method served from a suite's files.

    Attributes:
        name: registry key, the ``--method`` of the CLI and the ``method`` of the app's API.
        label: how the app and the tables call it.
        source: where it is defined (paper and equation).
        available: whether a suite serves it, from its manifest alone (no weights loaded).
        evaluate: ``(suite, eval sets, k or None) -> {"per_task", "average", "extra_bytes", ...}``.
        pipeline: routed methods: ``suite -> AutoSwitch`` (router + engine); ``None`` otherwise.
        default_k: routed methods: the C the suite serves it with.
        neighbours: routed methods: what the router's neighbours are (``"exemplars"`` or ``"centres"``).
    """

    name: str
    label: str
    source: str
    available: Callable[[Manifest], bool]
    evaluate: Callable[[Suite, dict, int | None], dict]
    pipeline: Callable[[Suite], Any] | None = None
    default_k: Callable[[Manifest], int] | None = None
    neighbours: str | None = None

    @property
    def routed(self) -> bool:
        return self.pipeline is not None


SERVED: dict[str, ServedMethod] = {}


def register(method: ServedMethod) -> ServedMethod:
    if method.name in SERVED:
        raise ValueError(f"served method {method.name!r} is registered twice")
    SERVED[method.name] = method
    return method


def get_method(name: str) -> ServedMethod:
    """The served method ``name``; unknown names list the valid ones."""
    try:
        return SERVED[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"method {name!r} cannot be recomputed or served from a suite's files; valid: {', '.join(SERVED)} "
            f"(the others need the fine-tuned checkpoints: rebuild with demos/build_suite.py)"
        ) from None


def served_by(manifest: Manifest, routed: bool | None = None) -> list[str]:
    """The methods a suite serves (only the routed ones with ``routed=True``), in registry order."""
    return [m.name for m in SERVED.values() if m.available(manifest) and (routed is None or m.routed == routed)]


# -- the entries -----------------------------------------------------------------------------------
def _pretrained(suite, sets, k):
    from .evaluate import evaluate_static

    return {**evaluate_static(suite.adapter, suite.heads, sets, None), "extra_bytes": 0}


def _tswitch(suite, sets, k):
    from .evaluate import evaluate_tswitch

    return evaluate_tswitch(suite.engine, sets, suite.pack.header)


def _auto_switch(suite, sets, k):
    from .evaluate import evaluate_auto_switch

    return evaluate_auto_switch(suite.auto_switch, sets, k or suite.manifest.router.k, suite.pack.header)


def _flexswitch(suite, sets, k):
    from .evaluate import evaluate_tswitch

    return evaluate_tswitch(suite.flex_engine, sets, suite.flex_pack.header)


def _auto_flexswitch(suite, sets, k):
    from .evaluate import evaluate_routed, switch_bytes

    out = evaluate_routed(suite.auto_flexswitch, suite.heads, sets, k or _flex_k(suite.manifest))
    return {**out, "extra_bytes": switch_bytes(suite.flex_pack.header) + suite.flex_router.nbytes}


def _has_flex(manifest: Manifest) -> bool:
    return manifest.flex is not None


def _flex_k(manifest: Manifest) -> int:
    if manifest.flex is None:
        raise ValueError(f"suite {manifest.name} has no FlexSwitch pack")
    return manifest.flex.router.k


register(
    ServedMethod("pretrained", "Pre-trained", "the backbone with each task's frozen head", lambda m: True, _pretrained)
)
register(ServedMethod("t-switch", "T-Switch", "T-Switch Eq. 7 (oracle task id)", lambda m: True, _tswitch))
register(
    ServedMethod(
        "auto-switch",
        "Auto-Switch",
        "T-Switch Eq. 8 (k-NN over exemplars)",
        lambda m: True,
        _auto_switch,
        pipeline=lambda s: s.auto_switch,
        default_k=lambda m: m.router.k,
        neighbours="exemplars",
    )
)
register(ServedMethod("flexswitch", "FlexSwitch", "journal Eq. 15 (oracle task id)", _has_flex, _flexswitch))
register(
    ServedMethod(
        "auto-flexswitch",
        "Auto-FlexSwitch",
        "journal Eq. 18-19 (low-rank k-NN over centres)",
        _has_flex,
        _auto_flexswitch,
        pipeline=lambda s: s.auto_flexswitch,
        default_k=_flex_k,
        neighbours="centres",
    )
)
