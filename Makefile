# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
TFJS_WEIGHTS := $(SHARED)/weights/mobilenet_v1_0.75_224_tfjs
MOBILENET_075 := checkpoints/mobilenet_v1_075/mobilenet_v1_0.75_224.ckpt

.PHONY: demo keras-demo figures gallery vit-figure evaluate test test-other-kernels install \
  checkpoint browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The converted TF.js weights when ../shared has them, registered in the user's checkpoint home
# ($GUIDED_GRADCAM_HOME, default ~/.cache/guided_gradcam) so that runs from any folder find
# them; otherwise inference.py downloads the official checkpoint on first use.
checkpoint: install
	@if [ -f $(MOBILENET_075).index ]; then :; \
	elif [ -d $(TFJS_WEIGHTS) ]; then \
	  $(PY) -m guided_gradcam.zoo.convert_tfjs --model_dir $(TFJS_WEIGHTS) \
	    --sha256 $(TFJS_WEIGHTS).sha256 --output $(MOBILENET_075); \
	else echo "no $(TFJS_WEIGHTS): the official checkpoint will be downloaded"; fi
	@if [ -f $(MOBILENET_075).index ]; then \
	  $(PY) -m guided_gradcam.zoo.checkpoints --register $(MOBILENET_075) --network mobilenet_v1_075; fi

demo: checkpoint
	$(PY) inference.py --image images/cat.jpg --label 282 --output_dir output

# Your own model, shown on Keras 3's MobileNet V1 0.75 with the same real weights (../shared),
# saved as a .keras file and explained through --model.
KERAS_MOBILENET := checkpoints/keras/mobilenet_v1_075.keras
$(KERAS_MOBILENET): $(VENV)/.installed
	mkdir -p $(dir $@)
	$(PY) -m guided_gradcam.zoo.keras_mobilenet --model_dir $(TFJS_WEIGHTS) \
	  --sha256 $(TFJS_WEIGHTS).sha256 --output $@

keras-demo: $(KERAS_MOBILENET)
	$(PY) inference.py --model $(KERAS_MOBILENET) --preprocess inception --labels_file imagenet \
	  --image images/cat.jpg --label 282 --output_dir output/keras

# The paper's Figure 1 on its own photo (output/figures/, not committed: the photo is not ours),
# then the README's gallery from the photos in images/ into output/gallery/, to compare with the
# committed docs/gallery/. Only `make gallery` rewrites docs/gallery/: a few pixels may differ
# on another CPU, and a plain `make figures` must not leave the tree dirty. The gallery runs
# TensorFlow on one thread with its plain kernels, so that its float sums, and so the PNGs, come
# out the same byte for byte however many cores the machine has.
GALLERY_IMAGES := images/cat.jpg images/coffee.jpg images/astronaut.jpg
SINGLE_THREADED_TF := TF_ENABLE_ONEDNN_OPTS=0 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
RENDER_GALLERY := $(SINGLE_THREADED_TF) $(PY) scripts/make_figures.py \
  $(addprefix --image ,$(GALLERY_IMAGES)) --gallery_dir
GRADIENT_METHODS := gradcam,gradcampp,xgradcam,layercam,hirescam
GRADIENT_FREE_METHODS := scorecam,ablationcam,eigencam,eigengradcam
ALL_METHODS := $(GRADIENT_METHODS),$(GRADIENT_FREE_METHODS)
figures: checkpoint
	$(PY) scripts/make_figures.py --image $(SHARED)/images/cat_dog.jpg --output_dir output/figures
	$(PY) scripts/make_figures.py --image $(SHARED)/images/cat_dog.jpg --image images/cat.jpg \
	  --methods $(ALL_METHODS) --output_dir output/methods
	$(RENDER_GALLERY) output/gallery

gallery: checkpoint
	$(RENDER_GALLERY) docs/gallery
	$(SINGLE_THREADED_TF) $(PY) scripts/make_figures.py --image images/cat.jpg \
	  --methods $(ALL_METHODS) --gallery_dir docs/methods

# The README's vision-transformer figure: the tiny Keras 3 ViT of zoo/tiny_vit.py trained on
# where a bright square is (no reachable package ships real ViT weights), on one thread.
vit-figure: install
	$(SINGLE_THREADED_TF) $(PY) scripts/vit_figure.py --output docs/vit/tiny_vit.png

# The papers' measures on the photos the project ships and on the paper's own (boxes drawn by
# hand: images/boxes/README.md) with the real MobileNet V1 0.75; then every CAM method on the
# same photos.
evaluate: checkpoint
	$(PY) evaluate.py --image images --image $(SHARED)/images/cat_dog.jpg --boxes images/boxes \
	  --batch_size 32 --output_dir output/evaluation
	$(PY) evaluate.py --image images --image $(SHARED)/images/cat_dog.jpg --boxes images/boxes \
	  --batch_size 32 --methods $(ALL_METHODS) --metrics faithfulness,deletion,localisation \
	  --output_dir output/evaluation/methods

# Debian's headless Chromium, for the test that opens a run's index.html in a real browser
# (sudo only when not root); the package lists are fetched only when apt has no chromium yet.
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
browser:
	@command -v chromium >/dev/null || $(APT_GET) install -y chromium \
	  || { $(APT_GET) update && $(APT_GET) install -y chromium; }

test: checkpoint browser
	$(PY) -m pytest -q tests

# The tests whose two sides are float computations, once more under other kernels and threading
# (TF's plain kernels instead of oneDNN's, one thread): another CPU sums in another order, and a
# tolerance that only held for one order fails here first. .ci/run runs it after `make test`.
# GUIDED_GRADCAM_TOLERANCE_LOG=FILE logs each tolerance's use (tests/tolerance_log.py).
NUMERICS_TESTS := tests/test_graph.py tests/test_explainer_eager.py tests/methods \
  tests/core/test_lean_gradients.py tests/core/test_guided_relu.py tests/sources \
  tests/zoo/test_mobilenet_v1.py tests/zoo/test_keras_mobilenet.py tests/zoo/test_networks.py \
  tests/evaluation/test_runner.py tests/evaluation/test_runner_models.py \
  tests/evaluation/test_randomisation.py tests/cli/test_pipeline.py tests/cli/test_explain.py \
  tests/outputs/test_figures.py tests/test_segmentation.py
test-other-kernels: checkpoint
	$(SINGLE_THREADED_TF) $(PY) -m pytest -q $(NUMERICS_TESTS)

bench: checkpoint
	$(PY) benchmarks/bench.py

clean:
	rm -rf output .pytest_cache
