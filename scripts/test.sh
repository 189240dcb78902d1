#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up what is missing (seconds when already set up), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/core -k parquet`.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
. "$here/env.sh"
cd "$CLAY_REPO"
mkdir -p test-artifacts
"$CLAY_VENV/bin/ruff" check --quiet .   # style rules from pyproject.toml; under a second
exec "$CLAY_VENV/bin/python" -m pytest "$@"
