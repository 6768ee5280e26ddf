# Neurons to Pipelines — the course's commands. `make lab` and `make test` are all a user needs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8888
NB     ?= notebooks/*.ipynb labs/*/solution.ipynb
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)   # containers often run as root
SLIDES ?= notebooks/*.ipynb

.PHONY: setup lab test execute slides book gpu gpu-check grade clean help horovod
help:
	@echo "make lab      set up if needed, then start JupyterLab on $(HOST):$(PORT) (token login)"
	@echo "make test     set up if needed, then run every test (unit, notebooks, labs, browser)"
	@echo "make execute  re-run notebooks in place to refresh their outputs (NB=path.ipynb for one)"
	@echo "make slides   build offline reveal.js decks into slides/ (SLIDES=path.ipynb for one)"
	@echo "make book     build the offline course website into book/_build/html (stored outputs)"
	@echo "make gpu      swap tensorflow-cpu for the CUDA build of TensorFlow (GPU machines)"
	@echo "make gpu-check  on a GPU machine: run lessons 00, 09, 12-17 under nbval, report in gpu_report/REPORT.md"
	@echo "make grade    run SUBMISSIONS=dir/ (dir/<student>/<lab>.ipynb) and report to GRADE_OUT (CSV + HTML)"
	@echo "make horovod  build Horovod 0.28.1 from source into the venv (patched for today's torch), then a 2-rank smoke test"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

lab: setup
	$(BIN)/jupyter lab --ServerApp.ip=$(HOST) --ServerApp.port=$(PORT) \
	    --ServerApp.root_dir=. $(ROOT_ARG) $(LAB_ARGS) notebooks/00_start_here.ipynb

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

execute: setup
	$(BIN)/python tools/execute.py $(NB)

slides: setup slides/node_modules/.installed
	$(BIN)/python tools/build_slides.py $(SLIDES)

slides/node_modules/.installed: slides/package.json slides/package-lock.json
	cd slides && npm ci --no-audit --no-fund --loglevel=error
	touch $@

book: setup book/node_modules/.installed
	$(BIN)/python tools/build_book.py

book/node_modules/.installed: book/package.json book/package-lock.json
	cd book && npm ci --no-audit --no-fund --loglevel=error
	touch $@

gpu: setup
	$(BIN)/python -m pip uninstall --yes tensorflow-cpu
	$(BIN)/python -m pip install -c constraints.txt "tensorflow[and-cuda]==2.21.0"

gpu-check: setup
	$(BIN)/python tools/gpu_check.py --out gpu_report

SUBMISSIONS ?=
GRADE_OUT ?= grade_report
GRADE_TIMEOUT ?= 120
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir/  (dir/<student>/<lab>.ipynb)"; exit 2; }
	$(BIN)/python -m course_utils.grade $(SUBMISSIONS) --out $(GRADE_OUT) --timeout $(GRADE_TIMEOUT)

horovod: setup
	$(BIN)/python tools/build_horovod.py

clean:
	rm -rf $(VENV) slides/node_modules slides/*.slides.html book/node_modules book/_build
