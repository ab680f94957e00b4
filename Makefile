# Two commands do everything on a fresh machine:
#   make demo   -- the main job: train a spatial transformer on distorted MNIST, write the run report
#   make test   -- lint, type-check and run the test suite
# Both create the virtual environment in .venv first. torch==2.13.0 is installed before anything else
# (and pinned by constraints.txt) so that pip never resolves torch to a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stnkit-installed

# The main job's run folder. `make demo` resumes it when it holds a checkpoint (a killed run loses at
# most the current epoch; a finished one just rewrites its report).
RUN ?= runs/main/st-cnn-affine-rts

.PHONY: setup test lint docs demo baseline clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The documentation site into site/, in strict mode: a broken link, a missing page or an API name that no
# longer exists fails the build (mkdocs.yml). `make test` runs the same build (tests/docs/test_site.py).
docs: $(STAMP)
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
