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
from tests.test_models import WORDS, bert, bert_dir, effnet, effnet_file, images  # noqa: F401 - fixtures
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


def test_text_eval_sets_batch_by_length_and_score_as_the_split_order_does(bert):  # noqa: F811
    """Text items are batched in order of length (less padding), labels follow them, and both the
    accuracy and ``head(n)`` (the split's first n items) equal what the split's own order gives."""
    g = np.random.default_rng(0)
    texts = [" ".join(g.choice(WORDS, size=int(g.integers(1, 25)))) for _ in range(37)]
    labels = g.integers(0, 3, size=37)
    from tswitch.models.base import Head

    head = Head(torch.randn(3, 32, generator=torch.Generator().manual_seed(0)), torch.zeros(3), ("a", "b", "c"))
    data = EvalSet.build(bert, "t", texts, labels, batch_size=8)
    lengths = torch.cat([b["attention_mask"].sum(-1) for b in data.batches])
    assert data.order is not None and bool((lengths[1:] >= lengths[:-1]).all())
    assert sum(b["attention_mask"].numel() for b in data.batches) < sum(
        bert.preprocess(texts[i : i + 8])["attention_mask"].numel() for i in range(0, 37, 8)
    )
    np.testing.assert_array_equal(data.labels, labels[data.order])

    def split_order(items, ys):  # the reference: one item per batch, the split's order
        return sum(int(head(bert.features(bert.preprocess([x]))).argmax(-1) == y) for x, y in zip(items, ys)) / len(ys)

    assert accuracy(bert, head, data, None) == pytest.approx(split_order(texts, labels))
    first = data.head(20)
    assert sorted(first.order.tolist()) == list(range(20)) and len(first.labels) == 20
    assert accuracy(bert, head, first, None) == pytest.approx(split_order(texts[:20], labels[:20]))
    vectors = [torch.randn(6, generator=torch.Generator().manual_seed(i)).tolist() for i in range(5)]
    assert EvalSet.build(ToyAdapter(), "toy", vectors, np.zeros(5)).order is None  # no mask: the split's order
