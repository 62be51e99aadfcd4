# Two commands do everything from a fresh clone:
#   make run    set up .venv and run the main job on the embedded generated dataset
#   make test   set up .venv and run the test suite
#   make test-fast   the tests not marked slow (no Ray clusters, job processes or DeepSpeed engines): minutes
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Dev machines of this project ship a CPU-only torch wheel that torchvision cannot load;
# the constraints file pins the registry builds. Users elsewhere just `pip install .`.
PIP_FLAGS ?= -c constraints-dev.txt
ARGS ?=

export RAY_AUTH_MODE ?= token
export RAY_USAGE_STATS_ENABLED ?= 0
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv run test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install $(PIP_FLAGS) -e ".[dev]"
	# torchscale: the reference BEiT3 our multiway encoder is tested against. No deps: it pins timm 0.6,
	# which open_clip has outgrown, and only its model code (plus fairscale's wrappers) is needed.
	$(PY) -m pip install -q --no-deps --no-build-isolation torchscale==0.3.0 fairscale==0.4.0
	# DeepSpeed JIT-compiles its CPU shared-memory all-reduce the first time two ranks meet (a minute or more);
	# build it now, in set-up, instead of inside the first multi-worker job or test
	$(PY) -c "from deepspeed.accelerator import get_accelerator as a; b = a().create_op_builder('ShareMemCommBuilder'); b and b.load()" \
		|| echo "note: DeepSpeed's shared-memory op did not build now; the first multi-worker CPU job will try again"
	$(PY) -c "import torch, torchvision, open_clip, ray, deepspeed, mlflow, torch_geometric, transformers; print('environment ok: torch', torch.__version__, 'ray', ray.__version__)"
	touch $(STAMP)

run: venv
	$(PY) jobs/pipeline.py $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) runs mlruns mlflow.db
