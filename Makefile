# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install the pinned stack, run a real search
#   make test   same install, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
MITDB_DIR ?= $(abspath ../shared/data/mitdb)
DEMO_OUT ?= runs/demo

.PHONY: install test demo clean benchmarks

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[ecg,pinn,distributed,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	MITDB_DIR=$(MITDB_DIR) $(BIN)/python -m pytest -q

demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/nas run digits/cnn --strategy nsga2 --budget 24 --seed 0 --target digits/cortex-m4 \
	    --objective val_accuracy:max --objective energy_uj:min --constraint "params<=20000" \
	    --executor process --workers 2 --out $(DEMO_OUT)
	$(BIN)/nas report $(DEMO_OUT) --quiet
	@echo "demo: store $(DEMO_OUT)/study.db, report $(DEMO_OUT)/report.md, plot $(DEMO_OUT)/pareto.png"

clean:
	rm -rf $(VENV) runs *.egg-info
