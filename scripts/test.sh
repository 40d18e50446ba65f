#!/usr/bin/env bash
# Run the test suite; pytest's "no tests collected" (exit 5) is a failure here, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests - failing" >&2
  exit 1
fi
exit "$rc"
