#!/usr/bin/env bash
# The test command of the README: creates .venv on first use, then runs the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  # one pip command, so torch and torchvision are resolved together (never pin torch alone)
  .venv/bin/pip install -r requirements.txt -r requirements-dev.txt
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest -q "$@"
