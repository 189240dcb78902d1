# Debian chroots with Debian's QGIS, for scripts/qgis_matrix.sh. Source it, do not run it.
# Every mount made here lies under $MATRIX_CHROOTS; matrix_unmount_all removes them all (the caller's
# EXIT trap calls matrix_cleanup), so an interrupted run never leaves a mount behind.

# What qgis_process needs headless, plus python3-venv for the plugin's runtime set-up.
MATRIX_PACKAGES=(qgis python3-qgis qgis-providers python3-venv ca-certificates)
MATRIX_HOST_WHEELS=${CLAY_MATRIX_WHEELS:-/opt/wheels}

matrix_mirror() {
    # The Debian mirror this machine's apt uses (deb822 or one-line sources), unless overridden.
    if [[ -n "${CLAY_MATRIX_MIRROR:-}" ]]; then echo "$CLAY_MATRIX_MIRROR"; return; fi
    local uri
    uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* \
        2>/dev/null | head -n1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

matrix_mounts_under() {
    # Mount points below $1, deepest first (field 5 of mountinfo; our paths hold no spaces).
    awk -v prefix="$1/" 'index($5, prefix) == 1 {print $5}' /proc/self/mountinfo | sort -r
}

matrix_unmount_all() {
    local point
    for point in $(matrix_mounts_under "$MATRIX_CHROOTS"); do
        umount "$point" 2>/dev/null || umount -l "$point" || echo "matrix: could not unmount $point" >&2
    done
}

matrix_kill_chroot_processes() {
    # Processes whose root is one of our chroots (an interrupted qgis_process or pip): ours to end.
    local proc root
    for proc in /proc/[0-9]*; do
        root=$(readlink "$proc/root" 2>/dev/null) || continue
        [[ "$root" == "$MATRIX_CHROOTS"/* ]] && kill -TERM "${proc#/proc/}" 2>/dev/null
    done
    sleep 1
    for proc in /proc/[0-9]*; do
        root=$(readlink "$proc/root" 2>/dev/null) || continue
        [[ "$root" == "$MATRIX_CHROOTS"/* ]] && kill -KILL "${proc#/proc/}" 2>/dev/null
    done
    return 0
}

matrix_kill_tree() {
    # PID and all its descendants (children first collected, so none is re-parented away unseen).
    local pid=$1 child
    kill -STOP "$pid" 2>/dev/null || return 0
    for child in $(ps -o pid= --ppid "$pid"); do matrix_kill_tree "$child"; done
    kill -TERM "$pid" 2>/dev/null
    kill -CONT "$pid" 2>/dev/null
    return 0
}

matrix_cleanup() {
    matrix_kill_chroot_processes
    matrix_unmount_all
}

matrix_remove_tree() {
    # rm -rf a chroot only when nothing is mounted inside it (a bound /dev would be emptied otherwise).
    local dir=$1
    [[ -e "$dir" ]] || return 0
    matrix_unmount_all
    if [[ -n "$(matrix_mounts_under "$dir")" ]]; then
        echo "matrix: refusing to delete $dir: something is still mounted below it" >&2
        return 1
    fi
    rm -rf --one-file-system "$dir"
}

matrix_mount() {
    # The kernel file systems a chroot needs, plus the host's DNS and CA certificates (this machine's
    # egress proxy re-signs TLS, so pip inside the chroot must trust the same CAs as the host).
    local root=$1
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    mountpoint -q "$root/sys" || mount -t sysfs sysfs "$root/sys"
    mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
    mountpoint -q "$root/dev/pts" || mount --bind /dev/pts "$root/dev/pts"
    mkdir -p "$root/dev/shm"
    mountpoint -q "$root/dev/shm" || mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    # One pip cache for all suites: a rerun or a second suite does not download torch's ~5 GB again.
    mkdir -p "$MATRIX_CHROOTS/.pip-cache" "$root/root/.cache/pip"
    mountpoint -q "$root/root/.cache/pip" || mount --bind "$MATRIX_CHROOTS/.pip-cache" "$root/root/.cache/pip"
    # The host's local wheels (a CPU torch for Python 3.11), read-only, where the host's pip finds them.
    if [[ -d "$MATRIX_HOST_WHEELS" ]] && ! mountpoint -q "$root$MATRIX_HOST_WHEELS"; then
        mkdir -p "$root$MATRIX_HOST_WHEELS"
        mount --bind "$MATRIX_HOST_WHEELS" "$root$MATRIX_HOST_WHEELS"
        mount -o remount,bind,ro "$root$MATRIX_HOST_WHEELS"
    fi
}

matrix_env() {
    # The environment of a command in the chroot: a clean one (no host PYTHONPATH/PIP_*/CLAY_*),
    # headless Qt, and the CA bundle variables the host sets (they name a path that exists there too).
    local var
    echo PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR=/tmp/runtime-root
    for var in SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE http_proxy https_proxy no_proxy \
        HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [[ -n "${!var:-}" ]] && echo "$var=${!var}"
    done
    return 0
}

matrix_run() {
    # matrix_run ROOT CMD...: run CMD inside the chroot with the clean environment.
    local root=$1
    shift
    mkdir -p "$root/tmp/runtime-root" && chmod 700 "$root/tmp/runtime-root"
    # shellcheck disable=SC2046  # one word per variable
    chroot "$root" /usr/bin/env -i $(matrix_env) "$@"
}

matrix_debootstrap() {
    # A minimal Debian SUITE at ROOT (built aside and renamed, so ROOT existing means complete).
    local suite=$1 root=$2 mirror script=
    mirror=$(matrix_mirror)
    # debootstrap of an older host may lack a script for a newer suite: they are all sid-like.
    [[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=/usr/share/debootstrap/scripts/sid
    matrix_remove_tree "$root.partial"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase "$suite" "$root.partial" "$mirror" $script
    matrix_unmount_all
    mv "$root.partial" "$root"
}

matrix_configure_apt() {
    local suite=$1 root=$2
    echo "deb $(matrix_mirror) $suite main" >"$root/etc/apt/sources.list"
    # Mirror snapshots keep an old Release file (forky's had expired); no recommends keeps it ~400 MB.
    cat >"$root/etc/apt/apt.conf.d/90clay-matrix" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" # no services start in the chroot
    chmod 755 "$root/usr/sbin/policy-rc.d"
}

matrix_install_qgis() {
    local root=$1
    matrix_run "$root" apt-get update -q
    matrix_run "$root" apt-get install -y -q "${MATRIX_PACKAGES[@]}"
    matrix_run "$root" apt-get clean
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        matrix_run "$root" update-ca-certificates >/dev/null
    fi
}

matrix_ensure_chroot() {
    # Reuse build/chroots/SUITE when its stamp names the same packages and mirror; else (re)build.
    local suite=$1 root=$2 stamp want
    stamp="$root/.clay-matrix-stamp"
    want="$(matrix_mirror) ${MATRIX_PACKAGES[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "matrix: chroot $root reused"
        matrix_mount "$root"
        return 0
    fi
    [[ -d "$root" ]] || matrix_debootstrap "$suite" "$root"
    matrix_configure_apt "$suite" "$root"
    matrix_mount "$root"
    matrix_install_qgis "$root"
    echo "$want" >"$stamp"
}
