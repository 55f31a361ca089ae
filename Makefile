PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install twin lint test test-fast docs gallery bench bench-volume bench-latency demo demo-models clean

## install: the one set-up command (the package, its dependencies, the test tools, Ray for the --ray tests,
## keras-hub for its models' tests, nibabel and pydicom for volumes, and Sphinx for the documentation site)
install:
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[dev,ray,hub,volume,docs]"

## twin: a separate virtual environment at .twin/ (gitignored) with torch (CPU), pytorch-grad-cam and MONAI,
## for the torch-twin comparison (tests/test_torch_twin.py) and benchmarks/bench_volume.py. torch never enters
## the project's environment (it would load beside TensorFlow): the twin runs in its own process.
## torch==2.13.0 is the CPU build this machine holds (any other version means GBs of CUDA). grad-cam goes in
## with --no-deps: it imports torchvision, which does not load beside torch 2.13.0+cpu; the twin script puts
## a stand-in module in its place (benchmarks/twin/torch_twin.py says why that is sound). Remade from scratch.
TWIN ?= .twin
TWIN_PACKAGES = torch==2.13.0 monai==1.6.1 ttach==0.0.3 opencv-python-headless scipy scikit-learn tqdm matplotlib
twin:
	rm -rf $(TWIN)
	$(PYTHON) -m venv $(TWIN)
	$(TWIN)/bin/python -m pip install -q $(TWIN_PACKAGES)
	$(TWIN)/bin/python -m pip install -q --no-deps grad-cam==1.5.7
	$(TWIN)/bin/python benchmarks/twin/torch_twin.py check

## lint: ruff's rules and mypy on the typed public API (settings: [tool.ruff] and [tool.mypy] in
## pyproject.toml; mypy checks the files its `files` lists). `ruff format` is configured for new code but not
## enforced: it cannot keep the house layout (arguments packed and aligned), and would add ~2,200 lines.
LINT_PATHS = gradcam_cli tests scripts benchmarks
lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m mypy

## test: the one test command (what .ci/run runs): the lint first, then the suite
test: lint
	$(PYTHON) -m pytest -q

## gallery: every picture of the README and the docs (docs/images/gallery/: overview.png, volume-montage.jpg,
## clip-frames.png, one METHOD.png per method, the benchmarks page's charts from docs/data/benchmarks/*.json) and
## each method's figures (docs/data/method-figures.*) from the shipped demo models, offline; the same bytes on every run
gallery:
	$(PYTHON) scripts/gallery.py

## docs: the documentation site (Sphinx, MyST pages in docs/, the CLI reference from the Click commands, the API
## from docstrings, the gallery run from examples/ on the demo models), offline, every warning an error;
## open docs/_build/html/index.html
docs:
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

## bench: throughput against the bare step, tf-keras-vis when installed, memory, start-up time (~30 min on 2 cores)
bench:
	$(PYTHON) benchmarks/bench.py

## bench-volume: Grad-CAM of a 128x128x64 volume through keras.io's CT network against pytorch-grad-cam and
## MONAI on its torch twin (`make twin` first): time, peak memory, the maps' agreement; Score-CAM's mask bound
bench-volume:
	$(PYTHON) benchmarks/bench_volume.py

## bench-latency: whole `gradcam` processes on one image and on a folder (ResNet50, VGG16 at block5_conv3) against
## pytorch-grad-cam's script on the torch twin (`make twin` first), interleaved, and where one image's time goes
bench-latency:
	$(PYTHON) benchmarks/bench_latency.py

## test-fast: the suite without the large keras.applications builds
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

## demo: Grad-CAM of the shipped demo model on the synthetic sample scenes (offline)
demo:
	gradcam sample_images/synthetic_*.png --model demo-gap -o demo_out

## demo-models: retrain the five shipped demo models (about 50 minutes on 2 cores)
demo-models:
	$(PYTHON) scripts/train_demo_models.py

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out gradcam_out docs/_build docs/auto_examples
