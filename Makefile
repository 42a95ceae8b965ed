# Two commands do everything on a fresh machine:
#   make demo   set up .venv and run the end-to-end demo (BPE -> encode -> train -> generate)
#   make test   set up .venv and run every unit test and every notebook (pytest + nbval)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The data directory: ../shared/data beside a checkout when present, else data/.
export CS336_DATA_DIR ?= $(abspath $(if $(wildcard ../shared/data),../shared/data,data))
export TIKTOKEN_CACHE_DIR ?= $(CS336_DATA_DIR)/tiktoken-cache
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export MPLBACKEND = Agg

.PHONY: setup demo test unit notebooks bench figures reproduce writeup clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m cs336 demo

test: setup
	$(PY) -m pytest tests notebooks --nbval -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests -p no:cacheprovider

notebooks: setup
	$(PY) -m pytest notebooks --nbval -p no:cacheprovider

clean:
	rm -rf $(VENV) runs
