"""Every string the app shows, in one place (no numbers: those come from the suite files).

Method explanations and paper links come from the merge registry (``tswitch.merging``); only the
methods the registry does not hold (the pre-trained and fine-tuned references) are described here,
and ``REGISTRY_NAME`` says which registry entry describes a ``results.json`` method name.
"""

from __future__ import annotations

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
METHOD_LABELS = {"auto-switch": "Auto-Switch", "auto-flexswitch": "Auto-FlexSwitch"}
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
