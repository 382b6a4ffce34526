"""Real-checkpoint suites on tiny random checkpoints saved to disk (no network).

A tiny CLIP (text and vision towers) is the base; its vision tower plus small seeded perturbations
are the "fine-tunes"; a few random images per task in image folders are the data. The same for a
tiny RoBERTa with sequence-classification fine-tunes and GLUE-style TSV / ``save_to_disk`` data.
Everything goes through the library builder, the demo CLIs (subprocess), ``python -m tswitch
eval`` and the app's ``predict``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from test_models import save_tiny_clip  # noqa: E402

from tswitch.io import WeightsError  # noqa: E402
from tswitch.models import load_adapter  # noqa: E402
from tswitch.suites.checkpoints import GivenSuite, GivenTask, build_given, read_pickle  # noqa: E402
from tswitch.suites.checkpoints.families import CheckpointError, align  # noqa: E402
from tswitch.suites.checkpoints.legacy import converted  # noqa: E402
from tswitch.suites.checkpoints.zeroshot import CLASSNAMES, TEMPLATES, templates_for  # noqa: E402
from tswitch.suites.suite import Suite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
TASKS = {"mnist": 3, "eurosat": 4}  # task -> classes (names from the folders: FusionBench's need 10)


def perturb_vision(base_dir, out_dir, seed: int, scale: float = 0.02, hidden: int = 32) -> None:
    vision = transformers.CLIPVisionModel.from_pretrained(str(base_dir))
    if hidden != 32:  # a "fine-tune" of another architecture
        config = vision.config
        config.hidden_size, config.intermediate_size = hidden, 2 * hidden
        vision = transformers.CLIPVisionModel(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vision.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    vision.save_pretrained(str(out_dir), safe_serialization=True)


def image_folder(root, classes: int, per_class=(6, 3), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for part, n in zip(("train", "test"), per_class):
        for c in range(classes):
            folder = root / part / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
                pixels[..., c % 3] = 40 * c  # a class cue
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def clip_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipworld")
    base = root / "base"
    save_tiny_clip(base)
    for i, (task, classes) in enumerate(TASKS.items()):
        perturb_vision(base, root / f"ft_{task}", seed=10 + i)
        image_folder(root / "data" / task, classes, seed=i)
    perturb_vision(base, root / "ft_wrong", seed=99, hidden=48)
    return root


def clip_config(world, **kw) -> GivenSuite:
    tasks = tuple(
        GivenTask(t, str(world / f"ft_{t}"), "image-folder", {"root": str(world / "data" / t)}) for t in TASKS
    )
    args = dict(
        name="tiny-clip",
        family="clip",
        base=str(world / "base"),
        tasks=tasks,
        batch_size=4,
        exemplars_per_task=6,
        val_per_task=4,
        quick=True,
    )
    return GivenSuite(**{**args, **kw})


@pytest.fixture(scope="module")
def clip_suite(clip_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("clipsuites") / "tiny-clip"
    results = build_given(clip_config(clip_world), str(out), log=lambda _: None)
    return out, results


def zero_shot_reference(model, tokenizer, names, templates) -> torch.Tensor:
    """The head's formula written out: per class, mean of normalised prompt embeddings, normalised, x scale."""
    rows = []
    with torch.no_grad():
        for name in names:
            tokens = tokenizer([t.format(name) for t in templates], padding=True, return_tensors="pt")
            emb = model.get_text_features(**tokens)
            emb = emb.pooler_output if hasattr(emb, "pooler_output") else emb
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(0)
            rows.append(mean / mean.norm())
    return torch.stack(rows) * model.logit_scale.exp()


# -- data, heads, alignment ------------------------------------------------------------------------
def test_shipped_class_names_and_templates():
    assert {t: len(n) for t, n in CLASSNAMES.items()} == {
        "sun397": 397,
        "stanford-cars": 196,
        "resisc45": 45,
        "eurosat": 10,
        "svhn": 10,
        "gtsrb": 43,
        "mnist": 10,
        "dtd": 47,
    }
    assert {t: len(v) for t, v in TEMPLATES.items()} == {
        "sun397": 2,
        "stanford-cars": 8,
        "resisc45": 18,
        "eurosat": 3,
        "svhn": 1,
        "gtsrb": 3,
        "mnist": 1,
        "dtd": 8,
    }
    assert all(t.count("{}") == 1 for v in TEMPLATES.values() for t in v)
    assert TEMPLATES["resisc45"][:3] == ("satellite imagery of {}.", "aerial imagery of {}.", "satellite photo of {}.")
    assert all(len(set(names)) == len(names) for task, names in CLASSNAMES.items() if task not in ("mnist", "svhn"))


def test_align_strips_prefixes_fills_missing_and_refuses_shapes():
    base = {"a.weight": torch.zeros(2, 3), "proj.weight": torch.zeros(4, 2), "ids": torch.arange(3)}
    ft = {"model.visual.a.weight": torch.ones(2, 3), "model.visual.other": torch.ones(1)}
    out = align(ft, base, "ft")
    assert set(out) == {"a.weight"} and torch.equal(out["a.weight"], torch.ones(2, 3))
    with pytest.raises(CheckpointError, match="shape"):
        align({"a.weight": torch.ones(3, 3)}, base, "ft")
    with pytest.raises(CheckpointError, match="no tensor"):
        align({"b": torch.ones(1)}, base, "ft")


# -- the CLIP suite ---------------------------------------------------------------------------------
def test_clip_suite_folder_and_zero_shot_heads(clip_suite, clip_world):
    out, results = clip_suite
    names = sorted(os.listdir(out))
    assert {
        "manifest.json",
        "switches.tsw",
        "heads.safetensors",
        "router.safetensors",
        "exemplars.json",
        "splits.json",
        "results.json",
        "examples",
    } <= set(names)
    assert not [n for n in os.listdir(out.parent) if n.startswith(".")]  # no temp folder left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"]["name"] == "hf-clip-vision" and manifest["recipe"]["given"]["family"] == "clip"
    assert [t["loader"]["name"] for t in manifest["tasks"]] == ["image-folder"] * 2
    splits = json.loads((out / "splits.json").read_text())
    for task, classes in TASKS.items():
        assert len(splits[task]["test"]) == 3 * classes
        assert all(i.startswith("train/") for i in splits[task]["train"] + splits[task]["val"])
        assert all(i.startswith("test/") for i in splits[task]["test"])
    suite = Suite(str(out))
    model = transformers.CLIPModel.from_pretrained(str(clip_world / "base")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(clip_world / "base"))
    for task, classes in TASKS.items():
        head = suite.heads[task]
        names = tuple(f"class {c}" for c in range(classes))  # folder names, "_" read as a space
        assert head.labels == names and head.normalize
        expected = zero_shot_reference(model, tokenizer, names, templates_for(task))
        assert torch.allclose(head.weight, expected, atol=1e-5)


def test_clip_individual_is_the_finetuned_clip_model(clip_suite, clip_world):
    """Individual = each fine-tuned vision tower in a CLIPModel with the base's text tower and
    projection, scored by CLIP's own logits against the averaged prompts (computed here, independently)."""
    out, results = clip_suite
    suite = Suite(str(out))
    sets = suite.eval_sets("test")
    model = transformers.CLIPModel.from_pretrained(str(clip_world / "base")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(clip_world / "base"))
    for task, classes in TASKS.items():
        from safetensors.torch import load_file

        full = transformers.CLIPModel.from_pretrained(str(clip_world / "base")).eval()
        vision = load_file(str(clip_world / f"ft_{task}" / "model.safetensors"))  # "vision_model.*"
        missing, unexpected = full.load_state_dict(vision, strict=False)
        assert not unexpected and all(not k.startswith("vision_model.") for k in missing)
        text = zero_shot_reference(model, tokenizer, [f"class {c}" for c in range(classes)], templates_for(task))
        correct = 0
        with torch.no_grad():
            for batch, start in zip(sets[task].batches, range(0, 10**6, 4)):
                image = full.get_image_features(pixel_values=batch["pixel_values"])
                image = image.pooler_output if hasattr(image, "pooler_output") else image
                logits = (image / image.norm(dim=-1, keepdim=True)) @ text.T
                labels = sets[task].labels[start : start + len(logits)]
                correct += int((logits.argmax(-1).numpy() == labels).sum())
        assert results["methods"]["individual"]["per_task"][task] == pytest.approx(correct / len(sets[task].labels))


def test_clip_suite_methods_and_eval_cli(clip_suite):
    out, results = clip_suite
    assert {
        "pretrained",
        "individual",
        "weight_average",
        "task_arithmetic",
        "ties",
        "dare",
        "emr_merging",
        "tall_masks",
        "t-switch",
        "auto-switch",
    } <= set(results["methods"])
    assert set(results["alpha_grid"]["binary"]) == {"0.5", "0.9"}
    proc = subprocess.run(
        [sys.executable, "-m", "tswitch", "eval", "--suite", str(out), "--method", "t-switch", "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["average"] == pytest.approx(results["methods"]["t-switch"]["average"])


def test_app_predicts_on_the_clip_suite(clip_suite, monkeypatch):
    from tswitch.app import callbacks, catalogue

    out, _ = clip_suite
    monkeypatch.setenv("TSWITCH_SUITES", str(out))
    catalogue.clear_caches()
    try:
        image = os.path.join(out, json.loads((out / "manifest.json").read_text())["tasks"][0]["examples"][0])
        result = callbacks.predict("tiny-clip", None, image, "auto-switch", 3)
        assert "error" not in result, result
        assert result["routed_task"] in TASKS and len(result["neighbours"]) == 3
        probs = list(result["prediction"].values())
        labels = catalogue.runtime("tiny-clip").heads[result["routed_task"]].labels
        assert len(probs) == min(5, len(labels)) and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-4 and (len(labels) > 5 or abs(sum(probs) - 1) < 1e-4)
    finally:
        catalogue.clear_caches()


def test_clip_cli_builds_and_refuses_bad_input(clip_world, tmp_path):
    script = os.path.join(ROOT, "demos", "build_clip_suite.py")

    def run(*args):
        return subprocess.run(
            [
                sys.executable,
                script,
                "--base",
                str(clip_world / "base"),
                "--tasks",
                *TASKS,
                "--batch-size",
                "4",
                "--val-per-task",
                "4",
                "--exemplars",
                "6",
                "--quick",
                "--device",
                "cpu",
                *args,
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=300,
        )

    data = [f"{t}={clip_world / 'data' / t}" for t in TASKS]
    good = [f"{t}={clip_world / f'ft_{t}'}" for t in TASKS]
    out = tmp_path / "cli-suite"
    proc = run("--finetuned", *good, "--data", *data, "--out", str(out), "--dtype", "bfloat16")
    assert proc.returncode == 0, proc.stderr
    assert "t-switch" in proc.stdout and (out / "results.json").exists()
    assert json.loads((out / "manifest.json").read_text())["adapter"]["args"]["dtype"] == "bfloat16"

    cases = {
        "missing": [f"mnist={tmp_path / 'nope'}", good[1]],
        "shapes": [f"mnist={clip_world / 'ft_wrong'}", good[1]],
    }
    for what, finetuned in cases.items():
        bad = tmp_path / f"bad-{what}"
        proc = run("--finetuned", *finetuned, "--data", *data, "--out", str(bad))
        assert proc.returncode == 2, (what, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert "error:" in lines[-1] and "Traceback" not in proc.stderr, (what, proc.stderr)
        assert not bad.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert "not found" in run("--finetuned", *cases["missing"], "--data", *data).stderr
    assert "shape" in run("--finetuned", *cases["shapes"], "--data", *data, "--out", str(tmp_path / "x")).stderr


# -- dtype --------------------------------------------------------------------------------------------
def test_half_precision_features_are_close_and_float32(clip_world):
    batch = None
    outs = {}
    for dtype in ("float32", "bfloat16", "float16"):
        adapter = load_adapter("hf-clip-vision", source=str(clip_world / "base"), dtype=dtype)
        if batch is None:
            batch = adapter.preprocess([Image.new("RGB", (40, 40), (i * 60, 20, 90)) for i in range(3)])
        outs[dtype] = adapter.features(batch)
        assert outs[dtype].dtype == torch.float32
    for dtype in ("bfloat16", "float16"):
        assert torch.allclose(outs[dtype], outs["float32"], atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="dtype"):
        load_adapter("hf-clip-vision", source=str(clip_world / "base"), dtype="int8")


# -- pickles --------------------------------------------------------------------------------------------
class _Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 2)
        self.ln = torch.nn.LayerNorm(4)
        self.register_buffer("scale", torch.ones(2))
        self.register_buffer("scratch", torch.zeros(1), persistent=False)


def test_pickles_need_trust_then_convert_once(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.visual = _Tower()  # a whole pickled model whose classes (this test module) are not importable below
    whole, plain = tmp_path / "finetuned.pt", tmp_path / "state.bin"
    torch.save(model, whole)
    torch.save(model.state_dict(), plain)
    reference = model.state_dict()
    with pytest.raises(WeightsError, match="--trust-pickle"):
        read_pickle(str(whole), trust_pickle=False)
    monkeypatch.setattr(sys.modules[__name__], "_Tower", None)  # the class can no longer be found
    for path in (whole, plain):
        tensors = read_pickle(str(path), trust_pickle=True)
        assert set(tensors) == set(reference) and all(torch.equal(tensors[k], reference[k]) for k in reference)
    cache = tmp_path / "cache"
    first = converted(str(whole), trust_pickle=True, cache_dir=str(cache))
    assert first.endswith(".safetensors")
    assert converted(str(whole), trust_pickle=False, cache_dir=str(cache)) == first  # no unpickling again


# -- the RoBERTa / GLUE suite -------------------------------------------------------------------------
WORDS = ["good", "bad", "fine", "awful", "great", "poor", "the", "movie", "was", "plot"]


def sentences(rng, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 7))) for _ in range(n)]


@pytest.fixture(scope="module")
def glue_world(tmp_path_factory):
    from tokenizers.pre_tokenizers import ByteLevel

    root = tmp_path_factory.mktemp("glueworld")
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *sorted(ByteLevel.alphabet())]
    tokenizer = transformers.RobertaTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[])
    config = transformers.RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=200,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    torch.manual_seed(3)
    base = transformers.RobertaModel(config)
    base.save_pretrained(root / "base", safe_serialization=True)
    tokenizer.save_pretrained(root / "base")
    for i, (task, labels) in enumerate((("sst2", 2), ("mnli", 3))):
        model = transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(**{**config.to_dict(), "num_labels": labels})
        )
        model.roberta.load_state_dict(base.state_dict(), strict=False)
        generator = torch.Generator().manual_seed(20 + i)
        with torch.no_grad():
            for p in model.roberta.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=generator))
        model.save_pretrained(root / f"ft_{task}", safe_serialization=True)
        tokenizer.save_pretrained(root / f"ft_{task}")
    rng = np.random.default_rng(0)
    # sst2 as GLUE's own TSV files; mnli as a datasets folder (pairs, ClassLabel names)
    (root / "sst2").mkdir()
    for part, n in (("train", 24), ("dev", 10)):
        rows = [f"{s}\t{rng.integers(0, 2)}" for s in sentences(rng, n)]
        (root / "sst2" / f"{part}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    parts = {}
    for part, n in (("train", 30), ("validation_matched", 9)):
        parts[part] = datasets.Dataset.from_dict(
            {"premise": sentences(rng, n), "hypothesis": sentences(rng, n), "label": [i % 3 for i in range(n)]},
            features=features,
        )
    datasets.DatasetDict(parts).save_to_disk(str(root / "mnli"))
    return root


def test_glue_suite_individual_is_the_finetuned_classifier(glue_world, tmp_path):
    tasks = (
        GivenTask("sst2", str(glue_world / "ft_sst2"), "text-table", {"root": str(glue_world / "sst2")}),
        GivenTask(
            "mnli",
            str(glue_world / "ft_mnli"),
            "hf-disk",
            {"path": str(glue_world / "mnli"), "test": "validation_matched"},
        ),
    )
    cfg = GivenSuite(
        name="tiny-glue",
        family="roberta",
        base=str(glue_world / "base"),
        tasks=tasks,
        batch_size=8,
        exemplars_per_task=6,
        val_per_task=6,
        quick=True,
    )
    out = tmp_path / "tiny-glue"
    results = build_given(cfg, str(out), log=lambda _: None)
    suite = Suite(str(out))
    assert suite.heads["mnli"].labels == ("entailment", "neutral", "contradiction")
    assert suite.heads["sst2"].dense_weight is not None  # the head's hidden layer round-trips
    from tswitch.suites.data import apply_split, load_task

    splits = json.loads((out / "splits.json").read_text())
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(glue_world / "base"))
    for task in tasks:
        data = apply_split(load_task(task.loader, **task.loader_args), splits[task.name]["test"])
        model = transformers.RobertaForSequenceClassification.from_pretrained(task.finetuned).eval()
        with torch.no_grad():
            logits = model(
                **tokenizer(list(data.inputs), padding=True, truncation=True, max_length=128, return_tensors="pt")
            ).logits
        expected = float((logits.argmax(-1).numpy() == data.labels).mean())
        assert results["methods"]["individual"]["per_task"][task.name] == pytest.approx(expected)
    routed = suite.route(["good movie</s></s>the plot was awful"], k=3)[0]
    assert routed["routed_task"] in ("sst2", "mnli") and routed["prediction"]


def test_glue_cli_needs_a_finetune_per_task(glue_world, tmp_path):
    script = os.path.join(ROOT, "demos", "build_glue_suite.py")
    proc = subprocess.run(
        [
            sys.executable,
            script,
            "--base",
            str(glue_world / "base"),
            "--tasks",
            "sst2",
            "--data",
            f"sst2={glue_world / 'sst2'}",
            "--out",
            str(tmp_path / "g"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and "--finetuned needs TASK=PATH for sst2" in proc.stderr
    assert not (tmp_path / "g").exists()
