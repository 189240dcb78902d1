#!/usr/bin/env bash
# The plugin as users install it, on the QGIS versions they run: one Debian chroot per suite with
# Debian's QGIS, the release zip installed into an empty profile, then the stock-install check.
#
#   sudo bash scripts/qgis_matrix.sh trixie forky            # bookworm = 3.22, trixie = 3.40, forky = 3.44
#   sudo bash scripts/qgis_matrix.sh --with-tests trixie     # + tests/qgis against that QGIS
#   sudo bash scripts/qgis_matrix.sh --rebuild forky         # a fresh chroot instead of the cached one
#   sudo bash scripts/qgis_matrix.sh --keep-runtime trixie   # reuse the Clay runtime of the last run (fast)
#
# Chroots are cached in build/chroots/SUITE (reused while their stamp matches), logs go to
# build/matrix/SUITE/. One summary line per suite; exit 1 when any suite fails, 2 on bad usage.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MATRIX_CHROOTS="${CLAY_MATRIX_CHROOTS:-$REPO/build/chroots}" # the cache; CI may keep it elsewhere
MATRIX_LOGS="$REPO/build/matrix"
. "$REPO/scripts/matrix/chroot.sh"
. "$REPO/scripts/matrix/steps.sh"

usage() {
    echo "usage: bash scripts/qgis_matrix.sh [--with-tests] [--rebuild] [--keep-runtime] SUITE... (bookworm, trixie, forky)" >&2
    exit 2
}

WITH_TESTS=0
REBUILD=0
KEEP_RUNTIME=0
SUITES=()
for arg in "$@"; do
    case "$arg" in
    --with-tests) WITH_TESTS=1 ;;
    --rebuild) REBUILD=1 ;;
    --keep-runtime) KEEP_RUNTIME=1 ;;
    bookworm | trixie | forky) SUITES+=("$arg") ;;
    *) echo "qgis_matrix: unknown suite or option '$arg'" >&2 && usage ;;
    esac
done
[[ ${#SUITES[@]} -gt 0 ]] || usage
if [[ $EUID -ne 0 ]]; then
    echo "qgis_matrix: needs root (debootstrap, chroot, mount): run it with sudo" >&2
    exit 2
fi
command -v debootstrap >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null

mkdir -p "$MATRIX_CHROOTS" "$MATRIX_LOGS"
exec 9>"$MATRIX_CHROOTS/.lock"
if ! flock -n 9; then
    echo "qgis_matrix: another run holds $MATRIX_CHROOTS/.lock; wait for it to finish" >&2
    exit 2
fi
SUITE_PID=
on_signal() {
    # Bash runs traps only between foreground commands: the suite runs in the background and this stops it
    # (its whole process tree, then anything left inside a chroot) before the EXIT trap unmounts.
    echo "qgis_matrix: interrupted; stopping the run and unmounting" >&2
    [[ -z "$SUITE_PID" ]] || matrix_kill_tree "$SUITE_PID"
    exit "$1"
}
trap matrix_cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

ZIP=$(matrix_build_zip)
echo "release zip: $ZIP"
SUMMARY=()
FAILED=0
for suite in "${SUITES[@]}"; do
    mkdir -p "$MATRIX_LOGS/$suite"
    log="$MATRIX_LOGS/$suite/matrix.log"
    echo "== $suite (log: $log)"
    # Each suite in a subshell: a failing step stops that suite only; its mounts go when it ends.
    (
        set -e
        matrix_suite "$suite" "$ZIP"
    ) > >(tee "$log" | grep --line-buffered -E '^(step|matrix:|stock-install check|  [a-z-]+: rc )') 2>&1 &
    SUITE_PID=$!
    status=0
    wait "$SUITE_PID" || status=$?
    SUITE_PID=
    matrix_cleanup
    SUMMARY+=("$(tail -n1 "$MATRIX_LOGS/$suite/summary" 2>/dev/null || echo "$suite: no summary")")
    [[ $status -eq 0 ]] || FAILED=1
done
echo
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
