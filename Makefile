# Two commands on a fresh machine: `make test` and `make demo`.
# The virtual environment is (re)built whenever requirements.txt or requirements-lib.txt changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test demo figures clean-venv

$(VENV)/.installed: requirements.txt requirements-lib.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadscope tests

demo: $(VENV)/.installed
	$(PY) train.py --config=configs/demo.py --workdir=workdirs/demo
	$(PY) -m dssr_jax.demo_report --workdir=workdirs/demo

# docs/ figures from the demo's model (trained first if workdirs/demo has not finished).
DEMO_HR := workdirs/demo/demo/holdout_hr
figures: demo
	cp workdirs/demo/demo/comparison.png docs/crops.png
	$(PY) -m dssr_jax.plots details --checkpoint=workdirs/demo --hr=$(DEMO_HR)/chelsea.png \
	    --hr=$(DEMO_HR)/coffee.png --sigma=1.2 --out=docs/details.png
	$(PY) eval.py --workdir=workdirs/demo --data_dir=workdirs/demo/demo --datasets=holdout_hr \
	    --output=workdirs/demo/demo/eval.json --overwrite
	$(PY) -m dssr_jax.plots steps --report=workdirs/demo/demo/eval.json --out=docs/per_step_psnr.png

clean-venv:
	rm -rf $(VENV)
