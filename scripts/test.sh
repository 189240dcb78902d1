#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up what is missing (seconds when already set up), then pytest,
# then the stock-install check (the release zip in an empty QGIS profile, runtime set up from scratch, no
# PYTHONPATH/venv: scripts/stock_install_check.py) natively on QGIS 3.22 and in a Debian trixie chroot on
# QGIS 3.40 (scripts/qgis_matrix.sh). Extra arguments go to pytest and skip both checks, e.g. `bash scripts/test.sh tests/core -k parquet`; CLAY_SKIP_STOCK_CHECK=1 skips it too.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
. "$here/env.sh"
cd "$CLAY_REPO"
mkdir -p test-artifacts
"$CLAY_VENV/bin/ruff" check --quiet .   # style rules from pyproject.toml; under a second
"$CLAY_VENV/bin/ruff" format --check --quiet .   # the formatter's layout (line length 120)
"$CLAY_VENV/bin/python" -m mypy   # types of clay_core and clay_qgis ([tool.mypy]): 43 s cold, 1 s with .mypy_cache
"$CLAY_VENV/bin/python" -m pytest "$@"
if [ "$#" -eq 0 ] && [ "${CLAY_SKIP_STOCK_CHECK:-0}" != 1 ]; then
  zip="$("$CLAY_VENV/bin/python" scripts/package_plugin.py)"
  # torch==2.13.0: the CPU wheel pip finds on this machine (the automatic choice would ask the PyTorch index).
  env -u CLAY_PYTHON /usr/bin/python3 scripts/stock_install_check.py --zip "$zip" --torch "torch==2.13.0" \
    --work "$CLAY_REPO/test-artifacts/stock-install-check"
  # The same check on QGIS 3.40 LTR (Debian trixie, Python 3.13) in a debootstrap chroot: ~11 min from nothing.
  # forky (3.44) runs on demand: `bash scripts/qgis_matrix.sh forky`. CLAY_SKIP_MATRIX=1 skips this step.
  if [ "${CLAY_SKIP_MATRIX:-0}" != 1 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo bash scripts/qgis_matrix.sh trixie
  fi
fi
