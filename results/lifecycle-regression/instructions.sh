#!/bin/bash
# Instructions per request, counted by valgrind (callgrind), old tree against new:
# deterministic where wall-clock runs on this shared 2-core VM spread by 25-45%.
#
#   results/lifecycle-regression/instructions.sh OLD_TREE NEW_TREE [RUNTIMES]
#
# Each tree is a checkout (e.g. `git worktree add /tmp/old 6c80265`). The server
# runs under callgrind; one keep-alive client sends N sequential hello-world
# requests; the per-request count is (I(4000) - I(1000)) / 3000, which cancels
# start-up and shutdown. One connection, so it measures the code each request
# runs, not how threads share the GIL at 64 connections (wrk does that).
set -eu
old=$1; new=$2; runtimes=${3:-threaded hybrid asyncio trio}
py=${PYTHON:-$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/python}
port=39200
client=$(mktemp --suffix=.py)
trap 'rm -f "$client"' EXIT
cat > "$client" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(int(sys.argv[2])):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"Hello World!"):
        data += s.recv(4096)
PY

count() {  # tree runtime requests port -> total instructions of the server process
    local out port=$4; out=$(mktemp)
    (cd "$1" && PYTHONPATH="$1" exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$py" -m astra experiments.apps:hello --bind 127.0.0.1:$port --runtime "$2" >/dev/null 2>&1) &
    local pid=$!
    for _ in $(seq 120); do sleep 1; (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; done
    "$py" "$client" "$port" "$3"
    kill -INT $pid; wait $pid || true
    awk '/^summary:/ {print $2}' "$out"; rm -f "$out"
}

printf "%-10s %12s %12s %8s\n" runtime old new new/old
for rt in $runtimes; do
    o1=$(count "$old" "$rt" 1000 $((port + 1))); o4=$(count "$old" "$rt" 4000 $((port + 2)))
    n1=$(count "$new" "$rt" 1000 $((port + 3))); n4=$(count "$new" "$rt" 4000 $((port + 4)))
    port=$((port + 4))
    o=$(( (o4 - o1) / 3000 )); n=$(( (n4 - n1) / 3000 ))
    printf "%-10s %12d %12d %8s\n" "$rt" "$o" "$n" "$(awk -v a=$n -v b=$o 'BEGIN {printf "%.3f", a/b}')"
done
