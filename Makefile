# `make run` starts the app, `make test` runs the suite; both create .venv on first use (an
# editable install with the app, training and test extras: everything the suite exercises).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[app,train,test]'
	touch $@

run: $(VENV)/.installed
	$(PY) main.py $(ARGS)

test: $(VENV)/.installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
