#!/bin/sh
# Talk to your anonchatd from the shell with socat: JSON-RPC 2.0, one JSON
# object per line on the daemon's local socket (see docs/rpc.md).
#
#   anonchat.sh call METHOD [PARAMS]   one call; prints the reply line
#   anonchat.sh watch [SINCE STREAM]   events as JSON lines, until Ctrl-C;
#                                      with SINCE and STREAM (the `seq` and
#                                      `stream` of the last event you saw),
#                                      first the events you missed
#
# Examples:
#   anonchat.sh call daemon.status
#   anonchat.sh call messages.send '{"to":"bob","text":"hello"}'
#   anonchat.sh watch 41 9f3a0c2d17e4b5a6
#
# The socket is $ANONCHAT_SOCKET, else $XDG_RUNTIME_DIR/anonchatd.sock.
# `call` waits ${ANONCHAT_WAIT:-2} seconds for the reply. It refuses
# methods that take a passphrase: on a command line it would be readable
# by every local user (ps, /proc/PID/cmdline) and kept in shell history.
# Unlock with `anonctl unlock` (it reads the passphrase without echo).
# Replies and events are printed as the daemon sent them: names and text
# come from your contacts; pipe through `jq` before a terminal shows them.
# Prefer anonctl for people: it checks that the socket is served by your
# own user before sending anything; socat does not.
set -eu

sock=${ANONCHAT_SOCKET:-${XDG_RUNTIME_DIR:-/nonexistent}/anonchatd.sock}
[ -S "$sock" ] || { echo "anonchat.sh: no daemon socket at $sock: start anonchatd, or set ANONCHAT_SOCKET" >&2; exit 3; }
command -v socat >/dev/null || { echo "anonchat.sh: socat is needed (Debian: apt install socat)" >&2; exit 3; }

case "${1:-}" in
call)
    [ $# -ge 2 ] || { echo "usage: anonchat.sh call METHOD [PARAMS]" >&2; exit 2; }
    params=${3:-}
    [ -n "$params" ] || params='{}'
    case "$params" in
    *passphrase*)
        echo "anonchat.sh: not sending a passphrase from a command line (any local user can read it there); use anonctl unlock / anonctl id create" >&2
        exit 2
        ;;
    esac
    printf '{"jsonrpc":"2.0","id":1,"method":"%s","params":%s}\n' "$2" "$params" |
        socat -t "${ANONCHAT_WAIT:-2}" - UNIX-CONNECT:"$sock"
    ;;
watch)
    if [ $# -ge 3 ]; then
        params=$(printf '{"since":%s,"stream":"%s"}' "$2" "$3")
    else
        params='{}'
    fi
    # Keep our side open (socat stops when its input ends and the wait is
    # over); the first line is the subscription's id or its error, then
    # one `events.event` notification per line.
    { printf '{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":%s}\n' "$params"; exec sleep 2147483647; } |
        socat - UNIX-CONNECT:"$sock"
    ;;
*)
    sed -n '2,24s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
