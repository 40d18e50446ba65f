#!/usr/bin/env bash
# The GPU path verified in one call on a lent GPU (one device, world size 1): bf16 training steps of the tiny
# recipe and of a ~0.5B Qwen2.5-architecture LLM (random weights), padded and packed, in plain torch and through
# launcher/train.py with DeepSpeed ZeRO-3 (packed == padded loss within bf16 tolerance on both paths), the
# attention backend the project selects (FlashAttention-2 if flash_attn imports, else SDPA), generation, and
# tokens/s and MFU against the bf16 matmul peak measured in the same run. One table: $OUT/gpu_check.md (+ .json,
# + the trainer logs in gpu_check.log). Details: benchmarks/gpu_check.py.
#
#   benchmarks/gpu_check.sh --prepare             # HERE (where the project is installed): fills .gpu_check/
#   benchmarks/gpu_check.sh                       # on the GPU machine (estimated 3-5 min; never run yet)
#   benchmarks/gpu_check.sh --prepare --dry-run   # then: benchmarks/gpu_check.sh --dry-run  (CPU, toy size; CI)
#
# --prepare builds what the GPU machine (device tool, nvidia-h200: Python 3.12, torch 2.11, transformers 5.17;
# no DeepSpeed, webdataset, simplejpeg, Ray, MLflow or PyAV; no internet) cannot: the zoo's tiny LLM and
# encoders, shards of a few synthetic clips, and wheels of what the model, the loader and the trainer import
# there (DeepSpeed built with DS_BUILD_OPS=0, pydantic, hjson, webdataset, simplejpeg, ...), the versions of
# this environment; all in .gpu_check/ (git-ignored, ~18 MiB). Then ONE device call from the checkout:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_check"], timeout_s=540)
#
# The wheels are installed into $WORK/site (never into the machine's Python) and put on PYTHONPATH.
# Environment: OUT (default work/gpu_check), WORK (scratch; default $TMPDIR/gpu_check.$$), PREP (default
# .gpu_check), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-work/gpu_check}
WORK=${WORK:-${TMPDIR:-/tmp}/gpu_check.$$}
PREP=${PREP:-.gpu_check}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
prepare=0 dry=()
for arg in "$@"; do
    case $arg in
        --prepare) prepare=1 ;;
        --dry-run) dry=(--dry-run) ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

# What the GPU machine lacks, at this environment's versions (pure Python except pydantic-core and simplejpeg).
WHEELS=(pydantic pydantic-core annotated-types typing-inspection typing-extensions hjson webdataset braceexpand
        simplejpeg)
pinned() { "$PYTHON" -c 'import importlib.metadata as m, sys; print(*(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"; }

if [ "$prepare" = 1 ]; then
    "$PYTHON" benchmarks/gpu_check.py prepare --dir "$PREP" "${dry[@]}"
    if [ ${#dry[@]} = 0 ]; then
        rm -rf "$PREP/whl" && mkdir -p "$PREP/whl"
        DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$PREP/whl" \
            $(pinned deepspeed)
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$PREP/whl" $(pinned "${WHEELS[@]}")
        ls "$PREP/whl"
    fi
    echo "gpu_check: prepared $PREP ($(du -sh "$PREP" | cut -f1)); on the GPU machine, from this checkout:"
    echo "  run(command=\"bash benchmarks/gpu_check.sh\", carry=[\"$PREP\"], timeout_s=540)"
    exit 0
fi

mkdir -p "$WORK"
if [ ${#dry[@]} = 0 ] && compgen -G "$PREP/whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$PREP"/whl/*.whl
    export PYTHONPATH=$PYTHONPATH:$WORK/site
fi
exec "$PYTHON" benchmarks/gpu_check.py check --dir "$PREP" --out "$OUT" --work "$WORK" "${dry[@]}"
