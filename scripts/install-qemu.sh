#!/usr/bin/env bash
# Installs QEMU (x86_64 system emulator) for the live-migration tests, plus the
# small host tools that scripts/build-guest.sh needs (cpio).
#
# Owns: the apt sources entry for bookworm-backports and the install of exactly
# `qemu-system-x86 qemu-system-common qemu-system-data seabios qemu-utils` from it.
# Must never: upgrade any other package from backports, or touch other sources.
#
# Why backports: the machine image carries qemu-utils 10.x from bookworm-backports,
# which conflicts with bookworm's QEMU 7.2 (see shared/design/machine-notes.md).
#
# Idempotent: a second run with everything in place only checks and exits.
set -euo pipefail

# qemu-utils: qemu-img and qemu-io for the storage-migration tests' disks.
QEMU_PKGS=(qemu-system-x86 qemu-system-common qemu-system-data seabios qemu-utils)
HOST_PKGS=(cpio)
SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources

log() { printf 'install-qemu: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (apt-get install)"
    exit 1
fi

have_all() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    command -v cpio >/dev/null 2>&1 || return 1
    command -v qemu-img >/dev/null 2>&1 || return 1
    command -v qemu-io >/dev/null 2>&1 || return 1
    qemu-system-x86_64 --version >/dev/null 2>&1 || return 1
}

if have_all; then
    log "already installed: $(qemu-system-x86_64 --version | head -n1)"
    exit 0
fi

# Add the backports suite next to the existing Debian sources, with the same
# mirror and keyring; never edit other sources files.
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding bookworm-backports to apt sources ($SOURCES)"
    cat >"$SOURCES" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q

log "installing ${HOST_PKGS[*]} (bookworm)"
apt-get install -y -q --no-install-recommends "${HOST_PKGS[@]}"

# Only these names come from backports: `-t` raises the priority of the
# suite for this one transaction, and naming the packages keeps the rest as is.
log "installing ${QEMU_PKGS[*]} from bookworm-backports"
apt-get install -y -q --no-install-recommends -t bookworm-backports "${QEMU_PKGS[@]}"

if ! have_all; then
    log "qemu-system-x86_64 still missing after install"
    exit 1
fi
log "installed: $(qemu-system-x86_64 --version | head -n1)"
