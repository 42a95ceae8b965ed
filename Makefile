# Two commands do everything on a fresh machine:
#   make demo   set up .venv and run the end-to-end demo (BPE -> encode -> train -> generate)
#   make test   set up .venv and run every unit test and every notebook (pytest + nbval)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Data: $CS336_DATA_DIR when set, else data/ (the package finds it the same way; see data/README.md).
DATA := $(or $(CS336_DATA_DIR),$(abspath data))
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export MPLBACKEND = Agg

.PHONY: setup demo test unit notebooks lab bench figures reproduce leaderboard-cpu writeup data-cpu clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m cs336 demo

# Tests write their figures to build/figures, so a test run leaves the committed figures/ as it was.
TEST_ENV := CS336_FIGURES_DIR=$(abspath build/figures)

test: setup
	$(TEST_ENV) $(PY) -m pytest tests notebooks --nbval -p no:cacheprovider

unit: setup
	$(TEST_ENV) $(PY) -m pytest tests -p no:cacheprovider

notebooks: setup
	$(TEST_ENV) $(PY) -m pytest notebooks --nbval -p no:cacheprovider

# JupyterLab on notebooks/ with the project's environment and kernel ("python3" of .venv).
# LAB_ARGS passes options on (e.g. LAB_ARGS="--no-browser --port 8889"); root needs --allow-root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install --quiet -c constraints.txt -e '.[notebooks]'
	$(PY) -m jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# --- experiments: sweeps, figures, write-up -----------------------------------------------------
# `make reproduce` reruns the experiments of notebooks 06, 08 and 09 and redraws their figures:
#   SCALE=cpu   the scaled-down sweeps on the TinyStories and OpenWebText samples in data/ (15-50
#               minutes on one core, depending on how busy the machine is);
#               their small logs land in results/ (committed), checkpoints in runs/ (not)
#   SCALE=full  the handout's runs (TinyStories V2 and OpenWebText; one GPU each, many GPU-hours)
SCALE ?= cpu
CPU_DATA := runs/data/tinystories_cpu
TS_SAMPLE := data/tinystories
OWT_CPU := runs/data/owt_cpu
OWT_SAMPLE := data/owt/owt-sample-680K.txt
CPU_SWEEPS := lr_cpu batch_size_cpu ablations_cpu owt_cpu
FULL_SWEEPS := lr_full batch_size_full ablations_full low_resource_full
TS_FULL := $(DATA)/tinystories
OWT := $(DATA)/owt

$(CPU_DATA)/vocab.json:
	$(PY) -m cs336 train-bpe --input $(TS_SAMPLE)/TinyStories-train-2M.txt --vocab-size 2000 --special-token '<|endoftext|>' --out $(CPU_DATA)

$(CPU_DATA)/%.npy: $(CPU_DATA)/vocab.json
	$(PY) -m cs336 encode --tokenizer $(CPU_DATA) --special-token '<|endoftext|>' --no-progress --out $@ \
		--input $(TS_SAMPLE)/TinyStories-$(if $(filter train,$*),train-2M,valid-800K).txt

# The OWT sample has no held-out split of its own: `cs336 data split` holds out every 5th of its
# documents (cs336/data/split.py), and the BPE learns from the rest only.
$(OWT_CPU)/train.txt $(OWT_CPU)/valid.txt &:
	$(PY) -m cs336 data split --input $(OWT_SAMPLE) --out $(OWT_CPU)

$(OWT_CPU)/vocab.json: $(OWT_CPU)/train.txt
	$(PY) -m cs336 train-bpe --input $(OWT_CPU)/train.txt --vocab-size 2000 --special-token '<|endoftext|>' --out $(OWT_CPU)

$(OWT_CPU)/%.npy: $(OWT_CPU)/vocab.json $(OWT_CPU)/%.txt
	$(PY) -m cs336 encode --tokenizer $(OWT_CPU) --special-token '<|endoftext|>' --no-progress --out $@ --input $(OWT_CPU)/$*.txt

data-cpu: setup $(CPU_DATA)/train.npy $(CPU_DATA)/valid.npy $(OWT_CPU)/train.npy $(OWT_CPU)/valid.npy

# The CPU leaderboard track of notebook 10: the one-seed screen of each idea (two runs at a time,
# ~95 minutes), then the three-seed track (one run at a time, 10 minutes each, the machine to itself).
# Finished runs are skipped, so it can be stopped and started again.
leaderboard-cpu: setup
	$(MAKE) data-cpu
	$(PY) -m cs336 sweep configs/sweeps/leaderboard_screen_cpu.toml --parallel 2
	$(PY) -m cs336 sweep configs/sweeps/leaderboard_track_cpu.toml --parallel 1
	$(MAKE) figures

reproduce: setup
ifeq ($(SCALE),cpu)
	$(MAKE) data-cpu
	for s in $(CPU_SWEEPS); do $(PY) -m cs336 sweep configs/sweeps/$$s.toml --parallel 1 || exit 1; done
	$(MAKE) figures
else ifeq ($(SCALE),full)
	$(PY) -m cs336 data fetch tinystories
	$(PY) -m cs336 train-bpe --input $(TS_FULL)/TinyStoriesV2-GPT4-train.txt --vocab-size 10000 --special-token '<|endoftext|>' --out $(TS_FULL)/tokenizer-10k
	$(PY) -m cs336 encode --tokenizer $(TS_FULL)/tokenizer-10k --special-token '<|endoftext|>' --input $(TS_FULL)/TinyStoriesV2-GPT4-train.txt --out $(TS_FULL)/tinystories-train-10k.npy
	$(PY) -m cs336 encode --tokenizer $(TS_FULL)/tokenizer-10k --special-token '<|endoftext|>' --input $(TS_FULL)/TinyStoriesV2-GPT4-valid.txt --out $(TS_FULL)/tinystories-valid-10k.npy
	for s in $(FULL_SWEEPS); do $(PY) -m cs336 sweep configs/sweeps/$$s.toml || exit 1; done
	$(PY) -m cs336 data fetch owt
	gunzip -kf $(DATA)/owt_train.txt.gz $(DATA)/owt_valid.txt.gz
	mkdir -p $(OWT)
	$(PY) -m cs336 train-bpe --input $(DATA)/owt_train.txt --vocab-size 32000 --special-token '<|endoftext|>' --out $(OWT)/tokenizer-32k
	$(PY) -m cs336 encode --tokenizer $(OWT)/tokenizer-32k --special-token '<|endoftext|>' --input $(DATA)/owt_train.txt --out $(OWT)/owt-train-32k.npy
	$(PY) -m cs336 encode --tokenizer $(OWT)/tokenizer-32k --special-token '<|endoftext|>' --input $(DATA)/owt_valid.txt --out $(OWT)/owt-valid-32k.npy
	$(PY) -m cs336 train --config configs/owt.toml --run-dir runs/owt
	$(PY) -m cs336 train --config configs/leaderboard.toml --run-dir runs/leaderboard
else
	$(error SCALE must be cpu or full, got $(SCALE))
endif

figures: setup
	$(PY) -m cs336.experiments.plots

writeup: setup
	$(PY) -c "import nbconvert" 2>/dev/null || $(PY) -m pip install --quiet -c constraints.txt -e '.[notebooks]'
	$(PY) -m cs336.experiments.writeup notebooks build/writeup.html
	@echo "wrote build/writeup.html"

clean:
	rm -rf $(VENV) runs
