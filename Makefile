# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install the pinned stack, run a short ECG search on MIT-BIH
#   make test   same install, then the type check (mypy, strict on nas_core/) and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
MITDB_DIR ?= $(abspath ../shared/data/mitdb)
DEMO_OUT ?= runs/demo

.PHONY: install test demo demo-digits clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m mypy
	MITDB_DIR=$(MITDB_DIR) $(BIN)/python -m pytest -q

# MIT-BIH from MITDB_DIR when it holds the records, else downloaded into data/mitdb on first use
DEMO_DATA = $(if $(wildcard $(MITDB_DIR)/100.hea),--data-dir $(MITDB_DIR),--data-dir data/mitdb --download true)

# a short look (3 epochs, 25 % of the beats, one seed); the measured search fidelity is the task's CV default
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/nas run ecg/efficient-cnn --target nrf52840 --battery-days 14 --band monitoring \
	    --strategy nsga2 --strategy-option population_size=6 --budget 12 --seed 0 \
	    --epochs 3 --data-fraction 0.25 --option cv_folds=3 --option repeats=1 \
	    --objective cv_sv_auroc:max --objective energy_uj_per_beat:min \
	    --constraint "params<=50000" --executor process --workers 2 $(DEMO_DATA) --out $(DEMO_OUT)
	$(BIN)/nas report $(DEMO_OUT) --quiet
	@echo "demo: store $(DEMO_OUT)/study.db, report $(DEMO_OUT)/report.md, plot $(DEMO_OUT)/pareto.png"

demo-digits: $(STAMP)
	rm -rf runs/demo-digits
	$(BIN)/nas run digits/cnn --strategy nsga2 --budget 24 --seed 0 --target digits/cortex-m4 \
	    --objective val_accuracy:max --objective energy_uj:min --constraint "params<=20000" \
	    --executor process --workers 2 --out runs/demo-digits
	$(BIN)/nas report runs/demo-digits --quiet

clean:
	rm -rf $(VENV) runs *.egg-info
