#!/usr/bin/env bash
# The GPU device check (benchmarks/device_check.py): one JSON document on stdout, and $OUT/device_check.json.
cd "$(dirname "$0")/.." && exec "${PYTHON:-$(command -v python3 || command -v python)}" benchmarks/device_check.py "$@"
