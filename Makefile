# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
TFJS_WEIGHTS := $(SHARED)/weights/mobilenet_v1_0.75_224_tfjs
MOBILENET_075 := checkpoints/mobilenet_v1_075/mobilenet_v1_0.75_224.ckpt

.PHONY: demo test install checkpoint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The converted TF.js weights when ../shared has them; otherwise inference.py downloads the
# official checkpoint on first use.
checkpoint: install
	@if [ -f $(MOBILENET_075).index ]; then :; \
	elif [ -d $(TFJS_WEIGHTS) ]; then \
	  $(PY) -m guided_gradcam.convert_tfjs --model_dir $(TFJS_WEIGHTS) \
	    --sha256 $(TFJS_WEIGHTS).sha256 --output $(MOBILENET_075); \
	else echo "no $(TFJS_WEIGHTS): the official checkpoint will be downloaded"; fi

demo: checkpoint
	$(PY) inference.py --image images/cat.jpg --label 282 --output_dir output

test: checkpoint
	$(PY) -m pytest -q tests

clean:
	rm -rf output .pytest_cache
