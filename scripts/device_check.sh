#!/usr/bin/env bash
# The GPU device check (benchmarks/device_check.py): one JSON document on stdout, and $OUT/device_check.json.
# Runs with $PYTHON, else the first of python3/python that imports torch (with none, the JSON says so).
cd "$(dirname "$0")/.." || exit 1
for python in ${PYTHON:-python3 python}; do
  "$python" -c "import torch" 2>/dev/null && exec "$python" benchmarks/device_check.py "$@"
done
exec "${PYTHON:-python3}" benchmarks/device_check.py "$@"
