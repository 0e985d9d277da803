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
	@echo "Upscale your own photos in a browser: $(PY) -m dssr_jax.app --checkpoint=workdirs/demo"

# docs/ figures from the demo's model (trained first if workdirs/demo has not finished);
# docs/app.png needs chromium (apt-get install chromium).
DEMO_HR := workdirs/demo/demo/holdout_hr
figures: demo
	cp workdirs/demo/demo/comparison.png docs/crops.png
	$(PY) -m dssr_jax.plots details --checkpoint=workdirs/demo --hr=$(DEMO_HR)/chelsea.png \
	    --hr=$(DEMO_HR)/coffee.png --sigma=1.2 --out=docs/details.png
	$(PY) eval.py --checkpoint=workdirs/demo --data_dir=workdirs/demo/demo --datasets=holdout_hr \
	    --output=workdirs/demo/demo/eval.json --html=workdirs/demo/demo/report --overwrite
	$(PY) -m dssr_jax.plots steps --report=workdirs/demo/demo/eval.json --out=docs/per_step_psnr.png
	# The report's viewer on the demo figure's photo and blur (demo_report.FIGURE_*), in Chromium.
	$(PY) -m dssr_jax.html_report --html=workdirs/demo/demo/report --image=coffee_sig1.14 \
	    --out=docs/report.png --overwrite
	$(PY) tests/screenshot_app.py --checkpoint=workdirs/demo --hr=$(DEMO_HR)/coffee.png --sigma=1.2 \
	    --out=docs/app.png

clean-venv:
	rm -rf $(VENV)
