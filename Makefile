# Two commands do everything on a fresh machine:
#   make demo   -- the main job: train a spatial transformer on distorted MNIST, write the run report
#   make test   -- lint, type-check and run the test suite
# Both create the virtual environment in .venv first. torch==2.13.0 is installed before anything else
# (and pinned by constraints.txt) so that pip never resolves torch to a multi-GB CUDA build.
# `make setup` (which `make test` and `make docs` run) also installs the site's JavaScript (`npm ci` from
# package-lock.json into node_modules/: onnxruntime-web for the demo page) and, as root, Debian's
# chromium for the demo page's browser test. Each step is skipped when it is done already.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stnkit-installed
NPM_STAMP := node_modules/.stnkit-npm-ci

# The main job's run folder. `make demo` resumes it when it holds a checkpoint (a killed run loses at
# most the current epoch; a finished one just rewrites its report).
RUN ?= runs/main/st-cnn-affine-rts

.PHONY: setup chromium apt-install test lint docs demo baseline clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# npm ci empties node_modules/ first, so the stamp inside it goes too: a fresh install, a fresh stamp.
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || $(MAKE) --no-print-directory apt-install PACKAGES="nodejs npm"
	@command -v npm >/dev/null 2>&1 || { echo "make setup: npm is needed for the docs site (install Debian's nodejs and npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# Debian's chromium, for tests/docs/test_demo_browser.py (which skips, saying why, without it). Never a
# downloaded browser build. Checked on every run rather than stamped: it lives outside the checkout.
chromium:
	@command -v chromium >/dev/null 2>&1 || $(MAKE) --no-print-directory apt-install PACKAGES=chromium

# apt-get install PACKAGES as root; otherwise, or when that fails, say what is missing and go on (what
# needs them says so: the browser test skips with the reason, the npm step stops).
apt-install:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PACKAGES); } || \
			echo "make setup: apt-get could not install $(PACKAGES): install it yourself"; \
	else \
		echo "make setup: $(PACKAGES) not installed and not root with apt-get: install it yourself"; \
	fi

setup: $(STAMP) $(NPM_STAMP) chromium

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest

# The documentation site into site/, in strict mode: a broken link, a missing page or an API name that no
# longer exists fails the build (mkdocs.yml). `make test` runs the same build (tests/docs/test_site.py).
docs: $(STAMP) $(NPM_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

demo: $(STAMP)
	@if [ -f $(RUN)/checkpoint.pt ]; then \
		$(BIN)/stnkit train --resume --out $(RUN); \
	else \
		$(BIN)/stnkit train --dataset rts --model st-cnn-affine --seed 0 --out $(RUN); \
	fi
	@echo "report: $(RUN)/report.md (and report.html)"

# The main job and the plain CNN under the same recipe and parameter budget (docs/results.md).
baseline: $(STAMP)
	PYTHON=$(BIN)/python scripts/main_job.sh

clean:
	rm -rf $(VENV) node_modules build/docs-demo build/demo-screenshots .pytest_cache .mypy_cache .ruff_cache
