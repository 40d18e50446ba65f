#!/usr/bin/env bash
# The end-to-end demo on embedded defaults. Each stage prints what it made; a failing stage stops the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-work/demo}
AG=.venv/bin/affectgpt
mkdir -p "$OUT"

echo "== 1/1 synthesize a corpus"
$AG synth --out "$OUT/corpus" --num "${DEMO_CLIPS:-600}" --seed 0 --workers 2
$AG corpus check "$OUT/corpus"
echo "demo: finished every stage above"
