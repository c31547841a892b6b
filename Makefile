# The two set-up commands of the README:
#   make demo   - runs the main job end to end on the embedded default
#   make test   - runs the test suite
# Each creates .venv from requirements.txt when it is missing or stale.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DATA ?= Data/frames
GPU ?= -1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-jax.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-jax.txt
	@cat requirements.txt requirements-jax.txt > $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

demo: $(STAMP)
	@bash tools/demo.sh "$(PY)" "$(DATA)" "$(GPU)"

clean-venv:
	rm -rf $(VENV)
