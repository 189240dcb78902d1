#!/usr/bin/env bash
# qgis_process with this checkout's plugin, venv and repo-local profile. Usage: scripts/qgis_process.sh run clay:info
# Debian's /usr/bin/qgis_process wrapper is broken on bookworm, so the .bin is called directly; it embeds
# Debian's python, hence the venv's packages on PYTHONPATH.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export PYTHONPATH="$CLAY_QGIS_PYTHONPATH${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/qgis_process.bin "$@"
