#!/bin/sh
# vws context agent: run once at boot, from the config drive (POSIX sh with curl or wget;
# busybox is enough).
#
# It reads the bootstrap and this guest's addresses from the drive, reports its identity
# to the context broker, asks again (1 s, doubling up to VWS_CTX_MAX_WAIT) until the
# context is complete, writes a hosts entry for every peer it was given, runs the role
# scripts, and reports ok, or an error naming the step that failed. It gives up, with an
# error, when the context is cancelled or its lifetime ends.
#
# Settings from the environment (defaults for a guest):
#   VWS_CTX_DRIVE     the mounted config drive                  /mnt/ctx
#   VWS_CTX_SCRIPTS   role scripts, in the Nimbus layout:       /opt/vws/ctx-scripts
#                     0-etchosts (IP short-name hostname, per peer), 1-ipandhost/<role>
#                     (the same, per provider of a role required), 2-thishost/<nic> (its own),
#                     3-data/<name> (a file holding the data), 4-restarts/<role> (no arguments),
#                     5-thishost-finalize/<nic> (as 2-thishost)
#   VWS_CTX_HOSTS     the hosts file to extend                  /etc/hosts
#   VWS_CTX_WORK      scratch space; data lands in data/<name>  /var/lib/vws-ctx
#   VWS_CTX_PUBKEY    this host's SSH public key                /etc/ssh/ssh_host_rsa_key.pub
#   VWS_CTX_MAX_WAIT  the longest pause between polls, seconds  30
#   VWS_CTX_DEADLINE  give up at this Unix time                 the context's end
# Every line it prints starts with VWS-CTX-AGENT. Exit status: 0 ok, else the error code
# reported: 1 no bootstrap, 2 refused by the broker, 3 timed out, 4 context cancelled,
# 5 a role script failed.

DRIVE=${VWS_CTX_DRIVE:-/mnt/ctx}
SCRIPTS=${VWS_CTX_SCRIPTS:-/opt/vws/ctx-scripts}
HOSTS=${VWS_CTX_HOSTS:-/etc/hosts}
WORK=${VWS_CTX_WORK:-/var/lib/vws-ctx}
PUBKEY=${VWS_CTX_PUBKEY:-/etc/ssh/ssh_host_rsa_key.pub}
MAX_WAIT=${VWS_CTX_MAX_WAIT:-30}

say() { echo "VWS-CTX-AGENT $*"; }

# report_error CODE STEP MESSAGE: tell the broker (once bootstrapped), then stop.
fail() {
    say "error $1 $2: $3"
    if [ -n "${VWS_CTX_KEY:-}" ]; then
        { cat "$WORK/identity"; echo "error $1 $2: $3"; } >"$WORK/exiting"
        post error "$WORK/exiting"
    fi
    exit "$1"
}

# post ACTION FILE: POST the file to the broker's agent door; CODE is the HTTP status
# (000 when the broker could not be reached), the answer is in $WORK/reply.
post() {
    url="${VWS_CTX_URL%/}/$VWS_CTX_KEY/$1"
    : >"$WORK/reply"
    if command -v curl >/dev/null 2>&1; then
        CODE=$(curl -s -o "$WORK/reply" -w '%{http_code}' -H "X-Vws-Context-Secret: $VWS_CTX_SECRET" \
            -H 'Content-Type: text/plain' --data-binary "@$2" "$url") || CODE=000
    elif wget -q -S -O "$WORK/reply" --header "X-Vws-Context-Secret: $VWS_CTX_SECRET" \
        --header 'Content-Type: text/plain' --post-file "$2" "$url" 2>"$WORK/wget.err"; then
        CODE=200
    else  # the status line -S shows: "HTTP/1.1 403 Forbidden"
        CODE=$(sed -n 's/.*HTTP\/1\.[01] \([0-9][0-9][0-9]\).*/\1/p' "$WORK/wget.err" | head -n 1)
        CODE=${CODE:-000}
    fi
}

# A name from the broker used as a file name: letters, digits, '.', '_', '-', not leading '.'.
safe_name() {
    case "$1" in
        '' | .* | *[!A-Za-z0-9._-]*) return 1 ;;
    esac
}

# run STEP SCRIPT ARGS...: run a role script if there is one; a failure fails the agent.
run() {
    step=$1
    script=$2
    shift 2
    [ -f "$script" ] || return 0
    say "running $step ${script##*/} $*"
    sh "$script" "$@" || fail 5 "$step" "${script##*/} exited $?"
}

# ---- bootstrap and identity -------------------------------------------------------------

mkdir -p "$WORK/data" || { say "error 1 bootstrap: cannot create $WORK"; exit 1; }
[ -f "$DRIVE/vws/context/bootstrap" ] || { say "error 1 bootstrap: no $DRIVE/vws/context/bootstrap"; exit 1; }
. "$DRIVE/vws/context/bootstrap"
DEADLINE=${VWS_CTX_DEADLINE:-$VWS_CTX_UNTIL}

key=
[ -f "$PUBKEY" ] && key=$(head -n 1 "$PUBKEY")
# vws/network: name ip netmask gateway mac hostname dns broadcast pool, one NIC a line.
: >"$WORK/identity"
while read -r nic ip _netmask _gateway _mac hostname _rest; do
    [ -n "$ip" ] && [ "$ip" != none ] || continue
    echo "identity $nic $ip $hostname $key" >>"$WORK/identity"
done <"$DRIVE/vws/network"
[ -s "$WORK/identity" ] || fail 1 identity "no address in $DRIVE/vws/network"

# ---- report and wait for the context ------------------------------------------------------

pause=1
while :; do
    post retrieve "$WORK/identity"
    state=wait
    case $CODE in
        200) state=$(sed -n 's/^state //p' "$WORK/reply") ;;
        403) fail 2 retrieve "the broker refused this context's secret (the context is gone, or this is not its member)" ;;
        409) ;;  # not a member yet: the service is still registering this workspace
        400) fail 2 retrieve "the broker could not read the report: $(cat "$WORK/reply")" ;;
    esac
    case $state in
        complete) break ;;
        cancelled) fail 4 retrieve "context cancelled: $(sed -n 's/^reason //p' "$WORK/reply")" ;;
    esac
    [ "$(date +%s)" -lt "$DEADLINE" ] || fail 3 retrieve "the context was not complete before $DEADLINE"
    say "waiting for the context ($CODE $state), next try in ${pause}s"
    sleep "$pause"
    pause=$((pause * 2))
    [ "$pause" -le "$MAX_WAIT" ] || pause=$MAX_WAIT
done
say "context complete"

# ---- apply it -------------------------------------------------------------------------------

# hosts: one block for this context, replaced whole when the agent runs again.
begin="# vws context $VWS_CTX_KEY begin"
end="# vws context $VWS_CTX_KEY end"
touch "$HOSTS"
sed "/^$begin\$/,/^$end\$/d" "$HOSTS" >"$WORK/hosts"
{
    echo "$begin"
    sed -n 's/^host \([^ ]*\) \([^ ]*\).*/\1 \2 \2/p' "$WORK/reply" | while read -r ip name _; do
        echo "$ip $name ${name%%.*}"
    done
    echo "$end"
} >>"$WORK/hosts"
cat "$WORK/hosts" >"$HOSTS" || fail 5 etchosts "cannot write $HOSTS"
say "wrote $(sed -n 's/^host \([^ ]*\) \([^ ]*\).*/\1 \2/p' "$WORK/reply" | tr '\n' ',' | sed 's/,$//') to $HOSTS"

etchosts=$SCRIPTS/0-etchosts
[ -f "$etchosts" ] || etchosts=$SCRIPTS/0-etchosts.sh
sed -n 's/^host \([^ ]*\) \([^ ]*\).*/\1 \2/p' "$WORK/reply" >"$WORK/hosts.list"
while read -r ip name; do
    run 0-etchosts "$etchosts" "$ip" "${name%%.*}" "$name"
done <"$WORK/hosts.list"

# hostname_of IP: the hostname the broker gave for it.
hostname_of() { awk -v ip="$1" '$1 == ip { print $2; exit }' "$WORK/hosts.list"; }

sed -n 's/^role //p' "$WORK/reply" >"$WORK/roles"
while read -r role ip; do
    safe_name "$role" || continue
    name=$(hostname_of "$ip")
    run 1-ipandhost "$SCRIPTS/1-ipandhost/$role" "$ip" "${name%%.*}" "$name"
done <"$WORK/roles"

while read -r _ nic ip name _; do
    safe_name "$nic" && run 2-thishost "$SCRIPTS/2-thishost/$nic" "$ip" "${name%%.*}" "$name"
done <"$WORK/identity"

sed -n 's/^data //p' "$WORK/reply" >"$WORK/data.list"
while read -r name value; do
    safe_name "$name" || continue
    echo "$value" | base64 -d >"$WORK/data/$name" || fail 5 3-data "cannot decode data $name"
    say "data $name ($(wc -c <"$WORK/data/$name" | tr -d ' ') bytes) in $WORK/data/$name"
    run 3-data "$SCRIPTS/3-data/$name" "$WORK/data/$name"
done <"$WORK/data.list"

cut -d ' ' -f 1 "$WORK/roles" | sort -u >"$WORK/roles.names"
while read -r role; do
    safe_name "$role" && run 4-restarts "$SCRIPTS/4-restarts/$role"
done <"$WORK/roles.names"

while read -r _ nic ip name _; do
    safe_name "$nic" && run 5-thishost-finalize "$SCRIPTS/5-thishost-finalize/$nic" "$ip" "${name%%.*}" "$name"
done <"$WORK/identity"

post ok "$WORK/identity"
[ "$CODE" = 200 ] || fail 2 ok "the broker did not take the ok report (HTTP $CODE)"
say "ok"
