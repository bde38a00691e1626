#!/usr/bin/env bash
# Builds the test guest for the QEMU live-migration tests: a Debian kernel and a
# small busybox initramfs, from Debian packages only.
#
# Owns: the guest cache dir (default target/guest/, override with GUEST_DIR or
# the first argument) and everything in it: vmlinuz, initramfs.cpio.gz, the
# downloaded .debs and a stamp.
# Must never: install a kernel or busybox on the host (packages are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x`), or write outside its dir.
#
# The guest's /init:
#   - loads virtio, virtio-net and virtio-blk modules (with their modules.dep
#     dependencies);
#   - brings up eth0 from the kernel command line:
#       sc.ip=100.64.1.10/16  [sc.gw=100.64.0.1]  [sc.port=7]
#     or, with sc.ip=dhcp, by DHCP (busybox udhcpc: address, prefix, router, MTU);
#     (the MAC is QEMU's: `-device virtio-net-pci,mac=...`);
#   - runs a persistent TCP echo server (`busybox nc -ll -p PORT -e cat`);
#   - prints `SC-GUEST-READY ip=... mac=... port=... via=static|dhcp` on the
#     console (ttyS0);
#   - with sc.disk=write and a virtio-blk disk (/dev/vda, e.g. a qcow2 given with
#     `-blockdev ... -device virtio-blk-pci`): writes the known block stream
#     forever, block i (4 KiB: the 16-byte record `SCBLK` + i in 11 digits,
#     repeated) at 4 KiB block sc.disk.base + i (default 32768, 128 MiB in), each
#     synced to the disk before the next, and prints `SC-DISK-WROTE n` every 16
#     blocks;
#   - with sc.dirty=N: rewrites N MiB of its RAM (a tmpfs file, random bytes so
#     that no page is a zero page) once a second, for a known memory dirty rate.
#
# Env: GUEST_DIR, KERNEL_PKG (e.g. linux-image-6.1.0-56-amd64; default: what
# bookworm's linux-image-amd64 depends on). Idempotent: a second run with the
# same inputs prints the paths and exits without touching apt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
GUEST_DIR=${1:-${GUEST_DIR:-$repo/target/guest}}
mkdir -p "$GUEST_DIR"
GUEST_DIR=$(cd "$GUEST_DIR" && pwd)

log() { printf 'build-guest: %s\n' "$*" >&2; }

# The modules the guest needs; their dependencies come from modules.dep.
WANT_MODULES=(virtio virtio_ring virtio_pci virtio_net virtio_blk)

# A stamp of this script's content plus the requested kernel: when it matches
# and both outputs exist, there is nothing to do (no apt, no network).
script_sum=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
stamp_want="$script_sum ${KERNEL_PKG:-default}"
if [[ -s $GUEST_DIR/vmlinuz && -s $GUEST_DIR/initramfs.cpio.gz && -f $GUEST_DIR/stamp ]] &&
    [[ $(cat "$GUEST_DIR/stamp") == "$stamp_want" ]]; then
    log "up to date: $GUEST_DIR/vmlinuz $GUEST_DIR/initramfs.cpio.gz"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "missing tool '$tool' (run scripts/install-qemu.sh first, it installs cpio)"
        exit 1
    fi
done

debs=$GUEST_DIR/debs
mkdir -p "$debs"
# apt-get download drops privileges to _apt when it can write the target dir.
chown _apt "$debs" 2>/dev/null || true

if [[ -z ${KERNEL_PKG:-} ]]; then
    if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
        log "apt lists empty: apt-get update"
        apt-get update -q >&2
    fi
    KERNEL_PKG=$(apt-cache depends linux-image-amd64 |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
    if [[ -z $KERNEL_PKG ]]; then
        log "cannot resolve the kernel behind linux-image-amd64"
        exit 1
    fi
fi
log "kernel package: $KERNEL_PKG"

fetch_deb() { # $1 = package name; prints the path of its .deb in $debs
    local pkg=$1 found
    found=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    if [[ -z $found ]]; then
        log "apt-get download $pkg"
        (cd "$debs" && apt-get download -q "$pkg" >&2) || {
            log "apt-get download $pkg failed; trying after apt-get update"
            apt-get update -q >&2
            (cd "$debs" && apt-get download -q "$pkg" >&2)
        }
        found=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    fi
    [[ -n $found ]] || { log "no .deb for $pkg"; exit 1; }
    printf '%s\n' "$found"
}

kernel_deb=$(fetch_deb "$KERNEL_PKG")
busybox_deb=$(fetch_deb busybox-static)

work=$(mktemp -d "$GUEST_DIR/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "unpacking $(basename "$kernel_deb")"
dpkg-deb -x "$kernel_deb" "$work/kernel"
dpkg-deb -x "$busybox_deb" "$work/busybox"

vmlinuz=$(find "$work/kernel/boot" -name 'vmlinuz-*' | head -n1)
[[ -n $vmlinuz ]] || { log "no vmlinuz in $kernel_deb"; exit 1; }
kver=${vmlinuz##*/vmlinuz-}
moddir=$(find "$work/kernel" -type d -path "*/lib/modules/$kver" | head -n1)
if [[ ! -f $moddir/modules.dep ]]; then
    # The package ships no modules.dep (depmod runs at install time): make one
    # with the busybox depmod from the Debian package, inside our unpacked tree.
    "$work/busybox/bin/busybox" depmod -b "${moddir%/lib/modules/$kver}" "$kver"
fi
[[ -f $moddir/modules.dep ]] || { log "no modules.dep for $kver"; exit 1; }

# Resolve module paths and dependencies from modules.dep, deepest first.
declare -A seen=()
ordered=()
mod_path() { # module name -> relative path in modules.dep ('-' and '_' alike)
    local name=${1//-/_}
    awk -F: -v n="$name" '{
        p = $1; b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b); gsub(/-/, "_", b);
        if (b == n) { print p; exit }
    }' "$moddir/modules.dep"
}
add_module() { # relative module path; adds its deps first
    local rel=$1 dep
    [[ -n ${seen[$rel]:-} ]] && return 0
    seen[$rel]=1
    for dep in $(awk -F: -v p="$rel" '$1 == p { print $2; exit }' "$moddir/modules.dep"); do
        add_module "$dep"
    done
    ordered+=("$rel")
}
for m in "${WANT_MODULES[@]}"; do
    rel=$(mod_path "$m")
    if [[ -z $rel ]]; then
        # Built into this kernel (listed in modules.builtin): nothing to load.
        if grep -q "/${m//_/[-_]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
            log "module $m is built in"
            continue
        fi
        log "module $m neither loadable nor built in for $kver"
        exit 1
    fi
    add_module "$rel"
done

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,etc,tmp,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
: >"$root/etc/modules"
for rel in "${ordered[@]}"; do
    base=$(basename "$rel")
    case $base in
    *.ko.xz) xz -dc "$moddir/$rel" >"$root/lib/modules/${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$rel" >"$root/lib/modules/${base%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$rel" >"$root/lib/modules/${base%.gz}" ;;
    *) cp "$moddir/$rel" "$root/lib/modules/$base" ;;
    esac
    base=${base%.xz}
    base=${base%.zst}
    base=${base%.gz}
    echo "$base" >>"$root/etc/modules"
done
log "modules: $(tr '\n' ' ' <"$root/etc/modules")"

cat >"$root/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's hook: configure eth0 with what the DHCP server gave, note the address.
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "$router" dev "$interface"
    echo "$ip/$mask" >/tmp/dhcp-address
    echo "SC-GUEST-DHCP ip=$ip mask=$mask router=$router mtu=$mtu dns=$dns" >/dev/console
    ;;
esac
exit 0
EOF
chmod 755 "$root/etc/udhcpc.script"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# supercloud test guest: virtio-net up, IP from the command line or DHCP, TCP echo
# server, and on request the known block stream on /dev/vda.
/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /etc/modules); do
    insmod "/lib/modules/$m" || echo "SC-GUEST-ERROR insmod $m"
done
ip=""; gw=""; port=7; disk=""; base=32768; dirty=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    sc.ip=*) ip="${arg#sc.ip=}" ;;
    sc.gw=*) gw="${arg#sc.gw=}" ;;
    sc.port=*) port="${arg#sc.port=}" ;;
    sc.disk=*) disk="${arg#sc.disk=}" ;;
    sc.disk.base=*) base="${arg#sc.disk.base=}" ;;
    sc.dirty=*) dirty="${arg#sc.dirty=}" ;;
    esac
done
via=static
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
if [ -z "$ip" ]; then
    echo "SC-GUEST-ERROR no sc.ip= on the kernel command line"
elif [ "$ip" = dhcp ]; then
    via=dhcp
    ip link set eth0 up
    udhcpc -i eth0 -f -q -n -t 30 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1 ||
        echo "SC-GUEST-ERROR dhcp: no lease"
    ip=$(cat /tmp/dhcp-address 2>/dev/null)
else
    ip link set eth0 up
    ip addr add "$ip" dev eth0
    [ -n "$gw" ] && ip route add default via "$gw"
fi
nc -ll -p "$port" -e /bin/cat &
sleep 0.2
mac=$(cat /sys/class/net/eth0/address 2>/dev/null)
echo "SC-GUEST-READY ip=$ip mac=$mac port=$port via=$via"
if [ "$disk" = write ]; then
    n=0
    while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    [ -b /dev/vda ] || echo "SC-GUEST-ERROR sc.disk=write but no /dev/vda"
    i=0
    while [ -b /dev/vda ]; do
        block=$(printf 'SCBLK%011d' "$i")
        for k in 1 2 3 4 5 6 7 8; do block=$block$block; done
        printf '%s' "$block" |
            dd of=/dev/vda bs=4096 count=1 seek=$((base + i)) iflag=fullblock conv=notrunc,fsync 2>/dev/null ||
            { echo "SC-DISK-ERROR block $i"; sleep 1; continue; }
        i=$((i + 1))
        [ $((i % 16)) -eq 0 ] && echo "SC-DISK-WROTE $i"
    done &
fi
if [ "$dirty" -gt 0 ] 2>/dev/null; then
    dd if=/dev/urandom of=/tmp/sc-dirty-src bs=1M count="$dirty" 2>/dev/null
    while true; do
        dd if=/tmp/sc-dirty-src of=/tmp/sc-dirty bs=1M count="$dirty" conv=notrunc 2>/dev/null
        sleep 1
    done &
fi
while true; do sleep 3600; done
EOF
chmod 755 "$root/init"

log "packing initramfs"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 >"$work/initramfs.cpio.gz"

cp "$vmlinuz" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$GUEST_DIR/vmlinuz"
mv -f "$work/initramfs.cpio.gz" "$GUEST_DIR/initramfs.cpio.gz"
echo "$kver" >"$GUEST_DIR/kernel-version"
echo "$stamp_want" >"$GUEST_DIR/stamp"
log "built for $kver: $GUEST_DIR/vmlinuz $GUEST_DIR/initramfs.cpio.gz ($(du -k "$GUEST_DIR/initramfs.cpio.gz" | cut -f1) KiB)"
