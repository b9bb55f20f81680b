#!/bin/sh
# bench/proxy.sh: redis-benchmark throughput direct to a redis-server and
# through the endpoint proxy (bench/proxy_bench), pipelining 1 and 16, and
# the ratio proxy/direct (target: >= 0.8); and the same through HAProxy,
# the reference TCP forwarder, when installed. It prints figures; it is
# not a test. Every process it starts is stopped by pid, also on failure.
#
#   bench/proxy.sh [BUILDDIR]     (default: the current directory)
#
# Environment: REPEAT (default 5) runs of each, the median is reported;
# N (200000) requests, C (50) clients.
set -eu

builddir=${1:-.}
bin=$builddir/bench/proxy_bench
repeat=${REPEAT:-5}
n=${N:-200000}
c=${C:-50}

if [ ! -x "$bin" ]; then
	echo "proxy.sh: no $bin; build it with 'make bench/proxy_bench'" >&2
	exit 1
fi
for tool in redis-server redis-benchmark redis-cli python3; do
	command -v "$tool" >/dev/null || { echo "proxy.sh: no $tool" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/ck-proxy-bench.XXXXXX)
pids=""
bench_pid=""
cleanup() {
	for pid in $bench_pid $pids; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pong() {
	[ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]
}

# wait_until WHAT LOG COMMAND...: up to 5 s for COMMAND to succeed, else
# say WHAT did not start, show LOG and fail.
wait_until() {
	what=$1 log=$2
	shift 2
	i=0
	until "$@" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 250 ] || { echo "proxy.sh: $what did not start" >&2; cat "$log" >&2; exit 1; }
		sleep 0.02
	done
}

rport=$(free_port)
redis-server --save "" --appendonly no --port "$rport" --bind 127.0.0.1 \
    --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
    --daemonize no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids="$pids $!"
wait_until "redis-server" "$tmp/redis.log" pong "$rport"

# Upstream over the node's unix socket, as the daemon does
# (UPSTREAM=tcp: its TCP port).
if [ "${UPSTREAM:-unix}" = tcp ]; then
	up=$rport hup="127.0.0.1:$rport"
else
	up=$tmp/redis.sock hup=$tmp/redis.sock
fi
"$bin" "$up" >"$tmp/proxy.out" 2>&1 &
pids="$pids $!"
wait_until "proxy_bench" "$tmp/proxy.out" grep -q '^port ' "$tmp/proxy.out"
pport=$(awk '/^port / { print $2; exit }' "$tmp/proxy.out")

# The reference forwarder, when installed (apt-get install haproxy):
# HAProxy in TCP mode with one thread, like the daemon's single loop, to
# the same redis-server, so that the figures say how much of the overhead
# is any user-space forwarder's on this machine and how much is ours.
hport=""
if ! command -v haproxy >/dev/null; then
	echo "proxy.sh: no haproxy (apt-get install haproxy): no reference column" >&2
else
	hport=$(free_port)
	printf '%s\n' "global" "	nbthread 1" "	maxconn 1000" "defaults" \
	    "	mode tcp" "	timeout connect 5s" "	timeout client 1m" \
	    "	timeout server 1m" "frontend ep" "	bind 127.0.0.1:$hport" \
	    "	default_backend redis" "backend redis" \
	    "	server r $hup" >"$tmp/haproxy.cfg"
	haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	pids="$pids $!"
	wait_until "haproxy" "$tmp/haproxy.log" pong "$hport"
fi

# One redis-benchmark run: "SET rps" and "GET rps" lines. It runs in the
# background so that a signal is handled at once, not after the run.
run() {
	redis-benchmark -h 127.0.0.1 -p "$1" -q -t set,get -n "$n" -c "$c" \
	    -P "$2" >"$tmp/run.out" 2>&1 &
	bench_pid=$!
	wait "$bench_pid"
	bench_pid=""
	tr '\r' '\n' <"$tmp/run.out" |
	    awk '/^(SET|GET): [0-9.]+ requests per second/ { sub(":", "", $1); print $1, $2 }'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$rport, proxy on :$pport${hport:+, haproxy $(haproxy -v | awk 'NR == 1 { print $3 }') on :$hport}; $(nproc) CPUs"
echo "redis-benchmark -t set,get -n $n -c $c, median of $repeat runs, interleaved; forwarders to $hup"
printf '%-4s %3s %12s %12s %7s %12s %7s %9s\n' test P direct/s proxy/s ratio haproxy/s ratio ours/hap
for pipe in 1 16; do
	: >"$tmp/direct" && : >"$tmp/proxy" && : >"$tmp/haproxy"
	r=0
	while [ $r -lt "$repeat" ]; do
		run "$rport" "$pipe" >>"$tmp/direct"
		run "$pport" "$pipe" >>"$tmp/proxy"
		[ -z "$hport" ] || run "$hport" "$pipe" >>"$tmp/haproxy"
		r=$((r + 1))
	done
	for t in SET GET; do
		d=$(awk -v t=$t '$1 == t { print $2 }' "$tmp/direct" | median)
		p=$(awk -v t=$t '$1 == t { print $2 }' "$tmp/proxy" | median)
		h=$(awk -v t=$t '$1 == t { print $2 }' "$tmp/haproxy" | median)
		awk -v t=$t -v P=$pipe -v d="$d" -v p="$p" -v h="${h:-0}" 'BEGIN {
			if (h > 0)
				printf "%-4s %3d %12.0f %12.0f %7.2f %12.0f %7.2f %9.2f\n", t, P, d, p, (d > 0 ? p / d : 0), h, (d > 0 ? h / d : 0), p / h
			else
				printf "%-4s %3d %12.0f %12.0f %7.2f %12s %7s %9s\n", t, P, d, p, (d > 0 ? p / d : 0), "-", "-", "-"
		}'
	done
done
