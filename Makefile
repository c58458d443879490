# Two commands for a fresh clone: `make demo` (set up, train, register, tag the sample dump) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned in the extras so pip takes the local CPU wheel, never a multi-GB CUDA build.
EXTRAS ?= transformer,dev,spark,ui
DEMO   := runs/demo
comma  := ,
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: setup demo test test-fast browser lint-dup clean

setup: $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(VENV)/.installed-%: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0" -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/newstag data validate
	mkdir -p runs && $(BIN)/newstag train -c configs/baseline.yaml --set tracking.alias=champion | tee $(DEMO).train.json
	$(BIN)/newstag tag data/articles -o $(DEMO)/tags.jsonl --model models:/newstag@champion
	@echo
	@echo "Trained, registered and tagged. Results:"
	@echo "  run summary       $(DEMO).train.json"
	@echo "  tagged sentences  $(DEMO)/tags.jsonl  (+ .summary.json, .errors.jsonl)"
	@echo "  MLflow UI         $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000  -> http://127.0.0.1:5000"

# Installs Debian's chromium for the browser test when it is missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium fonts-liberation >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-liberation >/dev/null)) || echo "chromium could not be installed: the browser test will be skipped"

test: setup browser
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not spark and not browser"

clean:
	rm -rf $(VENV) runs mlflow.db mlruns mlartifacts .pytest_cache
