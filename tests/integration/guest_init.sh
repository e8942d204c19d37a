#!/bin/busybox sh
# /init of the vws test guest (see guest.py). Reports on the serial console, one line each:
#   VWS-GUEST-BOOTED                       kernel up, modules loaded
#   VWS-CTX hostname=<h> | ip=<ip> | file=<path> sha256=<hex> | userdata-bytes=<n|none>
#   VWS-CTX none                           no contextualization drive
#   VWS-ROOT dev=<dev> head=<first word of the disk>
#   VWS-LAYERS <first word at MiB 4> <at MiB 5> <at MiB 6>  (a layered appliance's layers write there)
#   VWS-GUEST-WROTE                        marker written to the root disk and synced
#   VWS-CTX-AGENT ...                      a context member: its agent's lines (vws/context/agent.sh),
#   VWS-CTX-ROLE head <ip> <short> <host>  what the role scripts below were given,
#   VWS-CTX-DATA jobs <line>
#   VWS-CTX-HOSTS <line>                   the hosts entries it wrote
#   VWS-CTX-AGENT-EXIT <status>            and, last, how it ended
#   VWS-GUEST-ERROR <what>                 something above failed
# then idles for ever: PID 1 must not exit.

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /mnt/ctx /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel gave init no stdio.
exec </dev/console >/dev/console 2>&1

fail() { echo "VWS-GUEST-ERROR $*"; }

while read -r module; do
    insmod "/lib/modules/$module.ko" || fail "insmod $module"
done </etc/vws-modules
echo VWS-GUEST-BOOTED

disks() {
    for block in /sys/block/vd*; do
        [ -e "$block" ] && echo "/dev/${block##*/}"
    done
}

# virtio_blk registers disks during insmod; devtmpfs creates their nodes a moment later.
wait_for_node() {
    tries=0
    while [ ! -b "$1" ] && [ $tries -lt 50 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
}

# The volume identifier of an ISO 9660 primary volume descriptor (sector 16), if any.
iso_label() {
    [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || return 1
    dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' '
}

# The first word at MiB $2 of disk $1, then a space.
word_at() {
    printf '%s ' "$(dd if="$1" bs=1M skip="$2" count=1 2>/dev/null | head -c 64 | head -n 1 | tr -cd 'A-Za-z0-9._-')"
}

# The first dotted quad on the first NIC line: the field order of vws/network is in flux.
first_ip() {
    [ -f "$1" ] || { echo none; return; }
    for field in $(head -n 1 "$1"); do
        case "$field" in
            *[!0-9.]*) ;;
            *.*.*.*) echo "$field"; return ;;
        esac
    done
    echo none
}

apply_context() {
    [ -s "$1/hostname" ] && hostname "$(head -n 1 "$1/hostname")"
    echo "VWS-CTX hostname=$(hostname)"
    echo "VWS-CTX ip=$(first_ip "$1/network")"
    if [ -d "$1/files" ]; then
        (cd "$1/files" && find . -type f) | while read -r file; do
            target="/${file#./}"
            mkdir -p "$(dirname "$target")"
            cp "$1/files/$file" "$target" || fail "copy $target"
            echo "VWS-CTX file=$target sha256=$(sha256sum <"$target" | cut -d ' ' -f 1)"
        done
    fi
    if [ -f "$1/user-data" ]; then
        echo "VWS-CTX userdata-bytes=$(($(wc -c <"$1/user-data")))"
    else
        echo "VWS-CTX userdata-bytes=none"
    fi
}

ctx=
root=
for disk in $(disks); do
    wait_for_node "$disk"
    case "$(iso_label "$disk")" in
        VWSCTX | VWS-CONTEXT) [ -z "$ctx" ] && ctx=$disk ;;
        *) [ -z "$root" ] && root=$disk ;;
    esac
done

if [ -n "$ctx" ] && mount -t iso9660 -o ro "$ctx" /mnt/ctx; then
    apply_context /mnt/ctx/vws
else
    [ -n "$ctx" ] && fail "mount $ctx"
    echo "VWS-CTX none"
fi

if [ -n "$root" ]; then
    echo "VWS-ROOT dev=$root head=$(head -c 64 "$root" | head -n 1 | cut -d ' ' -f 1 | tr -cd 'A-Za-z0-9._-')"
    echo "VWS-LAYERS $(for mib in 4 5 6; do word_at "$root" "$mib"; done)"
    if echo "VWS-OVERLAY-WRITE-$(hostname)" | dd of="$root" bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null && sync; then
        echo VWS-GUEST-WROTE
    else
        fail "write $root"
    fi
else
    fail "no root disk"
fi

# A context member (the drive carries the agent): bring up the user-mode NIC, where the host
# is 10.0.2.2, give the agent role scripts that show what they get, and run it from the drive.
contextualize() {
    ip link set lo up
    if ! { ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; }; then
        fail "network for the context agent"
        return
    fi
    scripts=/etc/vws-ctx-scripts
    mkdir -p "$scripts/1-ipandhost" "$scripts/3-data"
    echo 'echo "VWS-CTX-ROLE head $1 $2 $3"' >"$scripts/1-ipandhost/head"
    echo 'sed "s/^/VWS-CTX-DATA jobs /" "$1"' >"$scripts/3-data/jobs"
    VWS_CTX_DRIVE=/mnt/ctx VWS_CTX_SCRIPTS=$scripts VWS_CTX_MAX_WAIT=2 sh /mnt/ctx/vws/context/agent.sh
    status=$?
    grep -v '^#' /etc/hosts | sed 's/^/VWS-CTX-HOSTS /'
    echo "VWS-CTX-AGENT-EXIT $status"
}
[ -f /mnt/ctx/vws/context/agent.sh ] && contextualize

while :; do
    sleep 3600
done
