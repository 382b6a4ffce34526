#!/usr/bin/env bash
# The main command: the Gradio demo on the suites in assets/ (http://127.0.0.1:7860).
#   bash run.sh [--host H] [--port P]          the demo (arguments go to app.py)
#   bash run.sh --walkthrough [--workdir DIR]  a CLI walkthrough on real weights (demos/walkthrough.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    # one resolve: pip picks torch and torchvision together (never pin torch alone)
    .venv/bin/pip install -r requirements.txt
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${1:-}" = "--walkthrough" ]; then
    shift
    exec .venv/bin/python demos/walkthrough.py "$@"
fi
exec .venv/bin/python app.py "$@"
