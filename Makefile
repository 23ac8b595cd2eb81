# Two entry points, both of which do all set-up on a fresh machine:
#   make demo  -> the main job on the embedded defaults, ending with runs/demo/report.html
#   make test  -> the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/haloc-hw: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/haloc-hw

demo: setup
	rm -rf runs/demo
	$(BIN)/haloc-hw search --arch arch/eyeriss.yaml --out runs/demo
	$(BIN)/haloc-hw report html runs/demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
