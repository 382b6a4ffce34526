"""Suites from real checkpoints: CLIP ViT-B/32, B/16, L/14 (FusionBench fine-tunes), RoBERTa on GLUE,
and legacy pickled checkpoints (task_vectors) behind an explicit ``trust_pickle``."""

from .build import GivenSuite, GivenTask, build_given, prepare_given
from .families import CLIP_MODELS, CLIP_TASKS, CheckpointError, align, get_family
from .legacy import read_pickle

__all__ = [
    "CLIP_MODELS",
    "CLIP_TASKS",
    "CheckpointError",
    "GivenSuite",
    "GivenTask",
    "align",
    "build_given",
    "get_family",
    "prepare_given",
    "read_pickle",
]
