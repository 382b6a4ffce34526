"""Build a suite from RoBERTa checkpoints fine-tuned on GLUE (RobertaForSequenceClassification).

    python demos/build_glue_suite.py --base roberta-base --tasks sst2 rte \
        --finetuned sst2=./roberta-sst2 rte=./roberta-rte --data sst2=./glue/sst2 rte=./glue/rte

Each task keeps its fine-tuned classification head; see README "Real checkpoints".
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tswitch.suites.checkpoints.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("roberta"))
