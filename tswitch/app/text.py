"""Every string the app shows, in one place (no numbers: those come from the suite files).

Method explanations and paper links come from the merge registry (``tswitch.merging``); only the
methods the registry does not hold (the pre-trained and fine-tuned references) are described here,
and ``REGISTRY_NAME`` says which registry entry describes a ``results.json`` method name.

Length: every string the app shows is here by rule (../shared/STYLE.md: all UI text in one module).
"""

from __future__ import annotations

from ..suites.methods import SERVED

TITLE = "tswitch: binary task switches"
HEADER = """# tswitch — binary task switches for model merging
One pre-trained backbone, a tiny **switch** per task (a bit mask, the signs of the kept entries and one
scale per tensor: *T-Switch*), and a router that picks the switches for each input from its nearest
exemplars (*Auto-Switch*). Pick a suite, then try it, compare it with other merging methods, or look
inside its switches."""
SUITE = "Suite"
NO_SUITES = "(none: build one with demos/build_suite.py or set TSWITCH_SUITES)"
NO_SUITES_PAGE = (
    "No suite found: build one with `python demos/build_suite.py --suite text-minilm`, or point "
    "`TSWITCH_SUITES` at a suite folder."
)

# -- tabs -------------------------------------------------------------------------------------------
TAB_TRY = "Try it"
TAB_COMPARE = "Compare"
TAB_INSIDE = "Inside a switch"

# -- Try it -----------------------------------------------------------------------------------------
TRY_INTRO = (
    "Type a sentence or upload an image (or click an example). The *C* nearest exemplars vote "
    "for the task switches; the backbone runs with those switches turned on."
)
METHOD = "Router"
METHOD_LABELS = {name: method.label for name, method in SERVED.items()}  # one label per served method
K = "C: nearest exemplars that vote"
TEXT_INPUT = "Text"
TEXT_PLACEHOLDER = "Type a sentence…"
IMAGE_INPUT = "Image"
RUN = "Route and predict"
EXAMPLES = "Examples (click one to run it)"
EXAMPLE_HEADERS = ["task", "example"]
WEIGHTS = "Task weights"
PREDICTION = "Merged model: top-5 for the routed task"
NEIGHBOURS = "Nearest exemplars"
COMPARISON = "Same input, other models (routed task's head)"
RAW = "API response (JSON)"
HISTORY = "Your recent inputs"
HISTORY_HEADERS = ["suite", "input", "routed task", "top label", "probability"]
ROUTED = "Routed to **{task}** ({votes} of {k} nearest {entries}). Merged-model answer: **{label}** ({prob:.1%})."
NEIGHBOUR_HEADERS = ("#", "task", "distance", "exemplar")
COMPARE_HEADERS = ["model", "weights", "top label", "probability"]
MODEL_MERGED = "{method} (merged)"
MODEL_PRETRAINED = "pre-trained"
MODEL_SINGLE = "T-Switch {task}"
INPUT_IMAGE = "(image)"
WEIGHTS_AXIS = "weight = votes / C"
VOTES_TEXT = "{votes}/{k}"
PROBABILITY = "probability"

# -- errors (one line each; the library's own messages are passed through) ----------------------
ERROR = "⚠️ {message}"
UNKNOWN_SUITE = "unknown suite {name!r}; available: {valid}"
UNKNOWN_METHOD = "suite {suite!r} has no {method!r} router; available: {valid}"
CENTRE = "K-means centre {centre} of {task} (Auto-FlexSwitch routes over centres, journal Eq. 18)"
BAD_K = "C must be a whole number from 1 to {max_k}, got {k!r}"
NEED_TEXT = "suite {suite!r} takes text: type a sentence"
NEED_IMAGE = "suite {suite!r} takes images: upload an image"
INTERNAL = "internal error ({kind}); the server log has the details"
LOADING = "loading {suite}: {part}"

# -- Compare ----------------------------------------------------------------------------------------
COMPARE_INTRO = (
    "Storage each method adds on top of the one pre-trained backbone, against average test "
    "accuracy. The Pareto front (no method is both smaller and better) is marked."
)
STORAGE_TITLE = "Storage vs accuracy"
STORAGE_AXIS = "extra storage beyond the backbone (bytes, log scale)"
ACCURACY_AXIS = "average accuracy"
PARETO = "Pareto front"
PRETRAINED_LINE = "pre-trained (no extra storage): {acc:.1%}"
INDIVIDUAL_LINE = "individual fine-tunes (one full model per task): {acc:.1%}"
CI = "95% interval"
GAIN = "gain retained"
TIE_NOTE = (
    "Bars and the interval column are 95% intervals of the average (tasks' test items resampled); "
    "two methods whose averages fall inside each other's interval are a **tie**. *Gain retained* = "
    "(method − Pre-trained) / (Individual − Pre-trained): the share of what fine-tuning bought that "
    "the method keeps."
)
PER_TASK = "Per-task test accuracy"
AVERAGE = "average"
EXTRA_MB = "extra MB"
ROUTING = "routing accuracy"
METHOD_COL = "method"
METHODS_TITLE = "### The methods"
METHOD_ROW = "- **{name}** — {description} {link}"
PAPER_LINK = "[arXiv:{paper}]({url})"
ALPHA_TITLE = "T-Switch and Auto-Switch along the pruning rate α"
ALPHA_AXIS = "α (fraction of each task vector dropped)"
ALPHA_SLIDER = "α"
ALPHA_OPTION = "BatchNorm statistics"
ALPHA_CHOSEN = "chosen on validation"
ALPHA_SELECTED = "α = {alpha} ({option}): T-Switch {ts:.1%}, Auto-Switch {auto:.1%} (test average)"
ALPHA_SELECTED_TS = "α = {alpha} ({option}): T-Switch {ts:.1%} (test average; Auto-Switch not scored at this α)"
K_SWEEP = "Auto-Switch C sweep at α = {alpha:g} (validation chose C = {k}): {rows}"
K_SWEEP_ROW = "C = {c}: {val:.1%} val, {test:.1%} test"
SPLIT_LINE = "{method} ({split})"
FLEX_DENSITY_TITLE = "FlexSwitch: learned density (LGS) per tensor and task"
FLEX_BITS_TITLE = "FlexSwitch: learned bit-width (BAS, Eq. 15) per tensor and task"

# Methods of results.json the merge registry does not hold, and registry names that differ.
OWN_METHODS = {
    "pretrained": "The pre-trained backbone with each task's head: no task vector at all.",
    "individual": "One fine-tuned model per task (the upper reference): a float32 copy per task.",
}
REGISTRY_NAME = {"t-switch": "tswitch", "auto-switch": "tswitch", "auto-flexswitch": "flexswitch"}
METHOD_NOTES = {
    "t-switch": "Oracle task id: turn on that task's switch (Eq. 7).",
    "auto-switch": "k-NN exemplar votes pick the switch weights per input (Eq. 8).",
    "flexswitch": "Oracle task id with switches whose sparsity (LGS, journal Eq. 6-11), bit-widths (BAS, "
    "Eq. 12-15) and scale were learned on 100 exemplars, stored with SASS (Eq. 16-17).",
    "auto-flexswitch": "FlexSwitch routed by k-NN over per-task K-means centres in a learned low-rank space "
    "(journal Eq. 18-19).",
}
ENTRIES = {"auto-switch": "exemplars", "auto-flexswitch": "K-means centres"}
METHOD_NAMES = {
    "pretrained": "Pre-trained",
    "individual": "Individual fine-tunes",
    "weight_average": "Weight averaging",
    "task_arithmetic": "Task arithmetic",
    "ties": "TIES",
    "dare": "DARE",
    "dare_ties": "DARE-TIES",
    "emr_merging": "EMR-Merging",
    "tall_masks": "TALL masks",
    "t-switch": "T-Switch",
    "auto-switch": "Auto-Switch",
    "flexswitch": "FlexSwitch",
    "auto-flexswitch": "Auto-FlexSwitch",
}

# -- Inside a switch --------------------------------------------------------------------------------
INSIDE_INTRO = (
    "What a switch pack stores, read from the suite's `switches.tsw`: per tensor and task the "
    "fraction of entries kept (density) and the switch's scale; the pulse experiment that "
    "motivates keeping only large entries; bytes against journal Eq. 16; and one tensor's mask. "
    "Suites with a FlexSwitch run also show its learned density and bit-width per tensor."
)
DENSITY_TITLE = "Density (kept / entries) per tensor and task; blank: stored dense"
SCALE_TITLE = "Scale per tensor and task (log10)"
BITS_TITLE = "Bits per kept entry per tensor and task"
TENSOR_AXIS = "tensor (in model order; hover for the name)"
TASK_AXIS = "task"
DENSE_NOTE = "stored dense (float16)"
PULSE_TITLE = "Pulse experiment: which entries of a task vector matter"
PULSE_AXIS = "α (fraction of each task vector dropped)"
PULSE_LABELS = {
    "keep_high": "keep the largest (P-Spar)",
    "keep_low": "keep the smallest",
    "random": "keep random (rescaled)",
    "b_approx": "keep the largest, binarised (B-Approx)",
}
PULSE_MISSING = "This suite's results hold no pulse experiment."
PSPAR_TITLE = "Eq. 4 merge of sparsified task vectors: P-Discard vs DARE's random drop"
PSPAR_LABELS = {"p-discard": "P-Discard (drop the smallest)", "dare-random": "DARE (drop at random)"}
EQ16_TITLE = "Switch bytes per tensor: stored vs SASS (journal Eq. 16)"
EQ16_MEASURED = "stored payload bytes"
EQ16_PREDICTED = "SASS bytes (Eq. 16)"
EQ16_SUMMARY = (
    "**{tasks} task(s), {tensors} switch tensors, stored as {layouts}:** {measured:,} B with scales, "
    "against {eq16:,} B in SASS (journal Eq. 16): **{saved:.1%} smaller**, and {over_bound:+.2%} from the "
    "entropy bound ({bound:,} B, each tensor's mask at its own density). A float32 task vector is {fp32:,} B; "
    "the switches take {bits:.3f} bits per parameter on average. Points under the dashed line are tensors "
    "a layout stores in fewer bytes than SASS."
)
EQ16_NONE = "This pack stores no switch tensor."
MASK_TASK = "Task"
MASK_TENSOR = "Tensor (2-D or more)"
MASK_TITLE = "kept fraction per {bh}×{bw} block of the {h}×{w} view"
MASK_CROP_TITLE = "top-left {h}×{w} entries: +1 / −1 / not kept"
MASK_SUMMARY = (
    "**{tensor}** for **{task}**: shape {shape}, {kept:,} of {numel:,} entries kept "
    "({density:.2%}), {positive:.1%} of them positive, scale {scale:.3g}."
)
MASK_DENSE = "**{tensor}** for **{task}** is stored dense (float16): it has no mask."
KEPT_FRACTION = "kept fraction"
SIGN = "sign"

# -- Teach a new task -------------------------------------------------------------------------------
TAB_TEACH = "Teach a new task"
TEACH_INTRO = (
    "Give the suite a task it has never seen: paste labelled lines (`label<TAB>text`, one per line), "
    "upload a two-column CSV (`label,text`), or pick an example. The app builds the task as the suite "
    "built its own: a frozen zero-shot head from your label names, then a short fine-tune of the "
    "backbone (a time cap keeps it to about a minute on the CPU Space). A fifth of your lines are "
    "held back to measure it. Your task lives in your session only and is gone when you close the page."
)
TEACH_LINES = "Labelled lines (label<TAB>text)"
TEACH_LINES_PLACEHOLDER = "positive\tI loved every minute of it\nnegative\tA waste of an evening\n…"
TEACH_UPLOAD = "…or a CSV file (label,text)"
TEACH_EXAMPLE = "…or an example task (not in the suite)"
TEACH_NAME = "Task name"
TEACH_NAME_PLACEHOLDER = "my-task-1"
TEACH_RUN = "Teach it"
TEACH_CANCEL = "Cancel"
TEACH_CANCELLING = "Cancelling: the fine-tune stops after its current step."
TEACH_QUEUE = "waiting: {ahead} fine-tune(s) ahead of yours (one runs at a time)"
TEACH_PHASES = {
    "head": "zero-shot head: choosing prompt templates on your training lines",
    "fine-tune": "fine-tuning the backbone: step {step} of at most {steps}",
    "switch": "turning the task vector into a switch",
    "evaluate": "measuring on your held-back lines",
    "done": "done",
}
TEACH_TEXT_ONLY = "suite {suite!r} takes images: a new task is taught on a text suite"
TEACH_BAD_UPLOAD = "the upload could not be read"
TEACH_METHODS = {"pretrained": "Pre-trained", "individual": "Individual", "t-switch": "T-Switch (the switch)"}
TEACH_STOPPED = {"steps": "all recipe steps", "time cap": "stopped by the time cap"}
TEACH_DONE = (
    "### 1. Before and after: **{task}**\n"
    "On your {n} held-back lines (never trained on): pre-trained **{pretrained:.1%}**, after the fine-tune "
    "(Individual) **{individual:.1%}**, the switch alone (T-Switch) **{t_switch:.1%}**. "
    "Fine-tuned on {train} lines for {steps} steps ({stopped}); {seconds:.0f} s in all."
)
TEACH_ACCURACY_TITLE = "Held-back accuracy with 95% Wilson intervals"
TEACH_LOSS = "training loss"
TEACH_LOSS_TITLE = "Fine-tune: loss per step"
TEACH_STEP_AXIS = "step"
TEACH_SWITCH = (
    "### 2. The task vector becomes a switch\n"
    "B-Approx at the suite's α = {alpha:g} keeps **{density:.2%}** of the entries (their sign, one scale per "
    "tensor): **{bytes:,} B** in the {layouts}, against {fp32:,} B for the float32 task vector "
    "(**{ratio:,.0f}× smaller**, {bits:.3f} bits per parameter).\n\n"
    "### 3. Auto-Switch can find it\n"
    "Your training lines became exemplars of the router: {routed:.1%} of the held-back lines "
    "(95% interval {lo:.1%}–{hi:.1%}, {n} lines) are routed to the new switch among the suite's tasks. "
    "Type a sentence below to see the votes."
)


def layouts_phrase(layouts) -> str:
    """``["golomb"]`` -> "golomb layout"; ``["bitmap", "golomb"]`` -> "bitmap and golomb layouts"."""
    names = list(layouts)
    if len(names) <= 1:
        return f"{names[0] if names else 'stored'} layout"
    return f"{', '.join(names[:-1])} and {names[-1]} layouts"


TEACH_MASK = "Mask of one tensor, **{tensor}**: {kept:,} of {numel:,} entries kept, scale {scale:.3g}."
TEACH_TRY = "Your next sentence"
TEACH_TRY_PLACEHOLDER = "Type a sentence to route among the suite's tasks and yours…"
TEACH_ROUTE = "Route it"
TEACH_ROUTED = (
    "Routed to **{task}**{new} ({votes} of {k} nearest exemplars; votes: {all}). Answer: **{label}** ({prob:.1%})."
)
TEACH_NEW = " (your new task)"
TEACH_DOWNLOAD = "Download the switch (.tsw, router exemplars, the suite with your task)"
TEACH_YOUR_TASKS = "Your tasks in this session"
TEACH_TASK_ROW = "- **{name}**: {labels} ({bytes:,} B switch)"
TEACH_NO_TASKS = "(none yet)"
TEACH_NONE_YET = "teach a task first: this session has none on this suite"
TEACH_EVICTED = "task(s) {names} were evicted to free memory for other visitors; teach again to bring one back"
TEACH_PICK = "Task to download"

# -- Guided tour ------------------------------------------------------------------------------------
TAB_TOUR = "Guided tour"
TOUR_PREV = "◀ Previous"
TOUR_NEXT = "Next ▶"
TOUR_POSITION = "Step {step} of {steps} · link to this step: `?tour={step}`"
TOUR_ALPHA = "α (fraction of each sign dropped)"
TOUR_INPUT = "Your input"
TOUR_ROUTE = "Route it"
TOUR_TEACH_EXAMPLE = "Compute a task vector now (teaches the example task, about a minute)"
TOUR_STEPS = {
    "vectors": (
        "## 1 · Task vectors\n"
        "Fine-tuning moves the backbone's {params:,} numbers; the move, **τ = θ_task − θ_0**, is the "
        "task vector. Stored as float32 it is **{fp32_mb:.1f} MB per task** — for {tasks} tasks "
        "{all_mb:.1f} MB. Its magnitudes are far from uniform: the chart shows, per tensor and task, the "
        "size of its largest entries (the switch scale in `switches.tsw`), from {lo:.2g} to {hi:.2g}."
    ),
    "pulse": (
        "## 2 · Which entries matter?\n"
        "Drop a fraction α of every task vector and measure ({split} average over {tasks} tasks). "
        "At α = {alpha:g}: keeping the **largest** entries scores **{high:.1%}**, the smallest {low:.1%}, "
        "a random rescaled set {random:.1%}; binarised largest entries (B-Approx) {bapprox:.1%}: "
        "largest minus smallest = {gap:+.1f} points."
    ),
    "pulse-missing": "## 2 · Which entries matter?\nThis suite's results.json holds no pulse experiment.",
    "switch": (
        "## 3 · From a task vector to a switch\n"
        "P-Spar keeps the largest entries of each sign; B-Approx then keeps only their **sign** and one "
        "**scale** per tensor. Move α and watch the mask, the scale and the bytes of one real tensor."
    ),
    "switch-none": (
        "## 3 · From a task vector to a switch\n"
        "This step needs one real task vector. The suite's files hold switches, not float task vectors: "
        "teach a task (tab *Teach a new task*) or press the button to compute one from the example task."
    ),
    "storage": (
        "## 4 · Storage against accuracy\n"
        "Every method of the suite ({split} average over {tasks} tasks): extra bytes beyond the one "
        "backbone against accuracy. Individual fine-tunes score {individual:.1%} with {individual_mb:.1f} MB; "
        "T-Switch {tswitch:.1%} with {tswitch_mb:.2f} MB ({ratio:.0f}× less); the best other method "
        "({best_static}) {static:.1%}.{intervals}"
    ),
    "routing": (
        "## 5 · Auto-Switch: no task id needed\n"
        "The router embeds your input, finds its {k} nearest exemplars and turns their votes into switch "
        "weights (routing accuracy on the test sets: {routing:.1%}). Type an input and route it."
    ),
}
TOUR_INTERVALS = " Bars: 95% intervals from results.json."
TOUR_SWITCH_MD = (
    "**{tensor}** (shape {shape}) of task **{task}**, α = {alpha:.2f}: P-Spar keeps **{kept:,}** of {numel:,} "
    "entries ({density:.2%}). Kept as float32 values with a bit mask they take {pspar_bytes:,} B; "
    "B-Approx stores a mask and a sign per kept entry and one scale **{scale:.3g}**: **{bapprox_bytes:,} B** "
    "({layout} layout), against {fp32:,} B for the dense float32 tensor. Relative error "
    "‖τ − approximation‖ / ‖τ‖: P-Spar {pspar_err:.1%}, B-Approx {bapprox_err:.1%}."
)
TOUR_PSPAR_TITLE = "P-Spar: kept values (top-left {h}×{w}, / max |τ|)"
TOUR_BAPPROX_TITLE = "B-Approx: ±scale (top-left {h}×{w})"
TOUR_IMAGE_ONLY = "This suite takes images: route an upload on the *Try it* tab."
