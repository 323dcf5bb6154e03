#!/usr/bin/env bash
# Creates .venv-baseline: Python 3.11 + PyTorch (CPU) + transformers 4.57, the Hugging Face side of
# benchmarks/serving.py. Idempotent: does nothing while .venv-baseline/.installed is newer than
# benchmarks/baseline_requirements.txt and this script.
#   bash benchmarks/setup_baseline.sh        (PYTHON311=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-baseline
REQUIREMENTS=benchmarks/baseline_requirements.txt
STAMP="$VENV/.installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$REQUIREMENTS" ] && [ "$STAMP" -nt "$0" ]; then
    exit 0
fi

if [ -z "${PYTHON311:-}" ]; then
    for candidate in /root/.pyenv/versions/3.11.7/bin/python /root/.pyenv/versions/3.11.*/bin/python3.11 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON311="$candidate"; break; fi
    done
fi
if [ -z "${PYTHON311:-}" ]; then
    echo "error: setup_baseline.sh: no Python 3.11 found; set PYTHON311=/path/to/python3.11" >&2
    exit 2
fi

rm -f "$STAMP"
test -x "$VENV/bin/python" || "$PYTHON311" -m venv "$VENV"
# torch first, pinned and alone: pip then takes the local CPU wheel (2.13.0+cpu) and
# transformers cannot pull in a CUDA build as a dependency.
"$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' "$REQUIREMENTS")"
"$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
"$VENV/bin/python" -c '
import sys, torch, transformers
if torch.version.cuda is not None:
    sys.exit(f"error: setup_baseline.sh: torch {torch.__version__} is a CUDA build; the baseline needs the CPU wheel")
print(f"baseline venv ready: Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}")
' >&2
touch "$STAMP"
