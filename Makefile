# lookalike: `make demo` runs the whole pipeline offline; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lookalike-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,lab,ray]'
	$(PY) -m lookalike kernel
	@touch $(STAMP)

## setup: create .venv, install the pinned stack, register the kernel, fetch the VGG16 weights
.PHONY: setup
setup: $(STAMP)
	$(PY) -m lookalike weights

## demo: run all five notebooks on the built-in demo (logos and catalog), offline
.PHONY: demo
demo: setup
	$(PY) -m lookalike run configs/demo-logos.yaml
	$(PY) -m lookalike run configs/demo-catalog.yaml
	@echo ""
	@echo "Demo results:"
	@echo "  runs/demo-logos/    (reports: runs/demo-logos/report/*.html)"
	@echo "  runs/demo-catalog/  (reports: runs/demo-catalog/report/*.html)"

## browser: install Debian's chromium for the gallery's real-browser test (needs root; never fails)
.PHONY: browser
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: installing chromium (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    >/dev/null 2>&1 || echo "make browser: could not install chromium; the browser test will be skipped" >&2; \
	else echo "make browser: chromium missing (as root: apt-get install -y chromium); the browser test will be skipped" >&2; fi

## test: run the test suite (pytest)
.PHONY: test
test: setup browser
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

## lab: open JupyterLab on the workspace with the project's kernel (prints the URL)
LAB_ARGS ?=
.PHONY: lab
lab: setup
	@root=""; if [ "$$(id -u)" = 0 ]; then root="--allow-root"; \
	  echo "make lab: running as root, so JupyterLab gets --allow-root"; fi; \
	echo "make lab: open the http://127.0.0.1:.../lab?token=... URL printed below; Ctrl-C stops it"; \
	exec $(VENV)/bin/jupyter lab --notebook-dir=. --no-browser $$root $(LAB_ARGS)

## peers: the published tools benchmarks/quality.py compares against, in virtualenvs of their own
PEERS_VENV := benchmarks/.peers-venv
FASTDUP_VENV := benchmarks/.fastdup-venv
.PHONY: peers
peers:
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -r benchmarks/peers/requirements.txt
	$(PEERS_VENV)/bin/pip install --quiet --no-deps imagededup==0.3.3.post2
	@# fastdup pins a stack of its own and bundles a non-commercial model: measured, never used
	@test -x $(FASTDUP_VENV)/bin/python || $(PYTHON) -m venv $(FASTDUP_VENV)
	$(FASTDUP_VENV)/bin/pip install --quiet fastdup==2.54 || \
	  { echo "make peers: fastdup did not install; quality.py runs without it" >&2; rm -rf $(FASTDUP_VENV); }

## lint: ruff lint and format check
.PHONY: lint
lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks scripts notebooks
	$(VENV)/bin/ruff format --check lib tests benchmarks scripts notebooks

## strip: strip outputs from the notebooks before committing
.PHONY: strip
strip: $(STAMP)
	$(VENV)/bin/nbstripout notebooks/*.ipynb

## bench: run the benchmarks (slow; prints ratios against baselines measured in the same run)
BENCHMARKS := scrape logos embed embed_memory cluster quality
.PHONY: bench
bench: setup
	@test -d benchmarks/sets/devicon || $(PY) benchmarks/make_labelled_sets.py \
		|| echo "labelled sets not built (it needs npm); quality.py scores the sets it finds"
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || exit 1; done

## clean-runs: delete every run folder under runs/
.PHONY: clean-runs
clean-runs:
	rm -rf runs/*/

## help: list the targets
.PHONY: help
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST) | column -t -s ':'
