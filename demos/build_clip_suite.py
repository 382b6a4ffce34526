"""Build a suite from CLIP checkpoints: a base CLIP and fine-tuned vision towers (FusionBench).

    python demos/build_clip_suite.py --model ViT-B-32 --data sun397=data/sun397 ... mnist=data/mnist
    python demos/build_clip_suite.py --base ./clip --finetuned mnist=./ft_mnist --tasks mnist --data mnist=./mnist

Zero-shot heads from each task's class names and templates; see README "Real checkpoints" and
``tswitch.suites.checkpoints``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tswitch.suites.checkpoints.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("clip"))
