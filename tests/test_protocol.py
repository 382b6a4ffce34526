"""The suites' protocol (../shared/PROTOCOL.md) where a build could silently go wrong.

- BatchNorm running statistics stay at the pre-trained values in fine-tuning (``train_bn=False``,
  the default recipe), so no task vector carries them;
- a merged model whose features are not finite is an error, not a score: the first vision suite's
  pulse and P-Discard/DARE rows were one constant (15.1%) because rescaled or binarised BatchNorm
  variances went negative and the argmax of NaN logits is a constant class.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_flex import ToyAdapter
from tests.test_models import effnet, effnet_file, images  # noqa: F401 - fixtures
from tswitch.models.heads import HeadTask, class_mean_head
from tswitch.suites.evaluate import EvalSet, InvalidWeights, accuracy, evaluate_static
from tswitch.suites.spec import Recipe
from tswitch.suites.train import finetune


def test_the_default_recipe_freezes_batchnorm_statistics_and_dropout():
    assert Recipe().train_bn is False and Recipe().dropout is False


def test_finetuning_with_frozen_batchnorm_leaves_the_running_statistics(effnet):  # noqa: F811
    inputs = images(16, size=64)
    labels = np.array([i % 2 for i in range(16)])
    head = class_mean_head(effnet, HeadTask(("a", "b"), inputs, labels), shots=4)
    base = effnet.state_dict()
    tuned = finetune(effnet, head, inputs, labels, steps=3, batch_size=8, lr=1e-2, train_bn=False)
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(tuned[k], base[k]) for k in stats)
    assert any(not torch.equal(tuned[k], base[k]) for k in base if k.endswith(".weight"))  # it did train
    moved = finetune(effnet, head, inputs, labels, steps=3, batch_size=8, lr=1e-2, train_bn=True)
    assert any(not torch.equal(moved[k], base[k]) for k in stats)  # the old recipe: statistics move


def test_non_finite_features_are_an_error_not_a_constant_accuracy():
    adapter = ToyAdapter()
    g = torch.Generator().manual_seed(0)
    data = EvalSet(
        "toy",
        [adapter.preprocess([torch.randn(6, generator=g).tolist() for _ in range(8)])],
        np.zeros(8, dtype=np.int64),
    )
    from tswitch.models.base import Head

    head = Head(torch.randn(3, 8, generator=g), torch.zeros(3), ("a", "b", "c"))
    assert 0.0 <= accuracy(adapter, head, data, None) <= 1.0
    bad = adapter.state_dict()
    bad["1.running_var"] = bad["1.running_var"] - 10.0  # a variance below zero: sqrt of a negative
    with pytest.raises(InvalidWeights, match="non-finite"):
        accuracy(adapter, head, data, bad)
    with pytest.raises(InvalidWeights):
        evaluate_static(adapter, {"toy": head}, {"toy": data}, bad)
