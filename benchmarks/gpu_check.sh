#!/usr/bin/env bash
# The GPU path verified in one call on a lent GPU (one device, world size 1, plain torch; DeepSpeed is not on
# that machine): bf16 training steps of the tiny recipe and of a ~0.5B Qwen2.5-architecture LLM, padded and
# packed (packed == padded loss within bf16 tolerance), the attention backend the project selects
# (FlashAttention-2 if flash_attn imports, else SDPA), generation, tokens/s and MFU against the bf16 matmul
# peak measured in the same run. Prints one table and writes it to $OUT/gpu_check.md (+ gpu_check.json).
#
#   benchmarks/gpu_check.sh             # on the GPU machine; finishes in a few minutes
#   benchmarks/gpu_check.sh --dry-run   # the same steps on CPU at toy size (CI: tests/benchmarks/)
#
# The GPU machine has torch, transformers, peft and safetensors but no model zoo source: build the three tiny
# entries where the project is installed and carry them (device tool: carry ["models"] after
#   affectgpt zoo build --out models --only llm/qwen2-tiny video/clip-tiny audio/whisper-tiny).
# Wheels carried under .whl/ (e.g. flash_attn) are installed first, without dependencies.
# Environment: OUT (default work/gpu_check), ZOO (default models), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-work/gpu_check}
ZOO=${ZOO:-models}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install --no-deps --quiet .whl/*.whl
fi
for entry in llm/qwen2-tiny video/clip-tiny audio/whisper-tiny; do
    if [ ! -d "$ZOO/$entry" ]; then
        echo "gpu_check: $ZOO/$entry is missing; build it: affectgpt zoo build --out $ZOO --only $entry" >&2
        exit 2
    fi
done
exec "$PYTHON" benchmarks/gpu_check.py --zoo "$ZOO" --out "$OUT" "$@"
