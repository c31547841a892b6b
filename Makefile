# The set-up commands of the README and CONTRIBUTING.md:
#   make demo   - runs the main job end to end on the embedded default
#   make test   - runs the test suite
#   make lint   - checks the code with ruff (settings in pyproject.toml)
# Each creates .venv from requirements.txt when it is missing or stale; make lint
# also installs requirements-dev.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DEV_STAMP := $(VENV)/.installed-dev-requirements
DATA ?= Data/frames
GPU ?= -1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-jax.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-jax.txt
	@cat requirements.txt requirements-jax.txt > $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@cp requirements-dev.txt $(DEV_STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q -n 2 --dist worksteal

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	@bash tools/demo.sh "$(PY)" "$(DATA)" "$(GPU)"

clean-venv:
	rm -rf $(VENV)
