#!/usr/bin/env bash
# The main job: set everything up (seconds when already done), then run the demo through qgis_process.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
. "$here/env.sh"
cd "$CLAY_REPO"
if [ -x scripts/demo.sh ]; then
  exec bash scripts/demo.sh "$@"
fi
echo "== clay info, through qgis_process (plugin provider 'clay', worker in $CLAY_PYTHON) =="
exec bash scripts/qgis_process.sh run clay:info
