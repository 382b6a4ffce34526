"""Merge methods, ours and the baselines, as a registry (:func:`get_method`, :func:`list_methods`).

Importing this package registers every method of :mod:`.static` and :mod:`.dynamic`.
"""

from .dynamic import (
    EMRComponents,
    TallMaskComponents,
    emr_components,
    emr_merging,
    tall_mask_components,
    tall_masks,
    tall_masks_from,
    tswitch_merge,
)
from .engine import AutoSwitch, CacheInfo, DynamicMergeEngine, EngineOutput
from .packed import DenseDelta, PackedQuantSwitch, PackedSwitch, PackedSwitches, SwitchEntry
from .registry import MergeMethod, get_method, list_methods, register
from .static import (
    dare,
    dare_ties,
    norm_rescaled_average,
    pspar_merge,
    sparse_task_arithmetic,
    task_arithmetic,
    ties,
    weight_average,
)

__all__ = [
    "MergeMethod",
    "get_method",
    "list_methods",
    "register",
    "sparse_task_arithmetic",
    "weight_average",
    "task_arithmetic",
    "ties",
    "dare",
    "dare_ties",
    "norm_rescaled_average",
    "pspar_merge",
    "EMRComponents",
    "emr_components",
    "emr_merging",
    "TallMaskComponents",
    "tall_mask_components",
    "tall_masks_from",
    "tall_masks",
    "tswitch_merge",
    "PackedSwitch",
    "DenseDelta",
    "PackedSwitches",
    "PackedQuantSwitch",
    "SwitchEntry",
    "DynamicMergeEngine",
    "EngineOutput",
    "CacheInfo",
    "AutoSwitch",
]
