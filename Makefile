PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install test test-fast lint demo clean

## install: the one set-up command (the package, its dependencies and the test tools)
install:
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[dev]"

## test: the one test command (what .ci/run runs)
test:
	$(PYTHON) -m pytest -q

## test-fast: the suite without the large keras.applications builds
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

## demo: Grad-CAM on the sample images with a randomly initialised VGG16 (offline)
demo:
	gradcam sample_images/ --model vgg16 --weights none -o demo_out

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out gradcam_out
