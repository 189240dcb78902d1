# Environment shared by every script: source it (". scripts/env.sh"), do not run it.
# Why each variable exists is explained in README.md ("How the pieces fit").
CLAY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CLAY_REPO
export CLAY_VENV="$CLAY_REPO/.venv"
export CLAY_PYTHON="${CLAY_PYTHON:-$CLAY_VENV/bin/python}"
# Repo-local QGIS settings/profile: never touch the user's own ~/.local/share/QGIS.
export QGIS_CUSTOM_CONFIG_PATH="${QGIS_CUSTOM_CONFIG_PATH:-$CLAY_REPO/.qgis-settings}"
# The dev plugin folder (symlinks into clay_qgis/) that QGIS and qgis_process load the plugin from.
export QGIS_PLUGINPATH="$CLAY_REPO/build/qgis-plugins"
export PROJ_DATA=/usr/share/proj
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# qgis_process embeds Debian's python, not the venv: put the repo and the venv's packages first.
# The venv's site-packages, whatever its Python version (3.11 on Debian 12, 3.13 on Debian 13, ...). A plain
# glob loop: callers run with `set -euo pipefail`, and the venv does not exist yet when setup.sh starts.
CLAY_SITE="$CLAY_VENV/lib/python3/site-packages"
for site in "$CLAY_VENV"/lib/python3.*/site-packages; do
  if [ -d "$site" ]; then CLAY_SITE="$site"; break; fi
done
export CLAY_SITE
export CLAY_QGIS_PYTHONPATH="$CLAY_REPO:$CLAY_SITE:/usr/share/qgis/python/plugins"
