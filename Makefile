# Two commands on a fresh machine: `make test` and `make demo`.
# The virtual environment is (re)built whenever requirements.txt changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test demo clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests

demo: $(VENV)/.installed
	$(PY) train.py --config=configs/demo.py --workdir=workdirs/demo
	$(PY) -m dssr_jax.demo_report --workdir=workdirs/demo

clean-venv:
	rm -rf $(VENV)
