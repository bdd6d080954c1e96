# fmct — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_FLAGS ?= -q

.PHONY: setup test demo bench lint clean weights

# (Re)install when .venv is missing or pyproject/constraints changed since the last install.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

demo: $(STAMP)
	$(BIN)/fmct demo --out demo_out

# The demo's shipped backbone, weights/demo-vit: MAE with 16 mm tokens on a 1,000-scan synthetic site-a pool whose
# seed (1001) no evaluation uses (the demo draws seeds SEED*1000+1..4): configs/mae-p4-cpu.yaml as it is (400 steps;
# 1200 fell behind on the demo's external sites). About 20 min on 2 idle cores; the work folder is build/weights.
WEIGHTS_WORK ?= build/weights
WEIGHTS_ARGS ?=
weights: $(STAMP)
	$(BIN)/fmct synth $(WEIGHTS_WORK)/pool --n 1000 --site a --seed 1001 --size 128 -j 2
	$(BIN)/fmct ingest $(WEIGHTS_WORK)/pool/dicom --out $(WEIGHTS_WORK)/store --spacing 2 -j 2 --deface
	$(BIN)/fmct pretrain --config configs/mae-p4-cpu.yaml --data $(WEIGHTS_WORK)/store \
		--out $(WEIGHTS_WORK)/run $(WEIGHTS_ARGS)
	mkdir -p weights/demo-vit
	cp $(WEIGHTS_WORK)/run/model/config.json $(WEIGHTS_WORK)/run/model/model.safetensors weights/demo-vit/

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

clean:
	rm -rf $(VENV) demo_out .pytest_cache
