#!/bin/sh
# Run every fuzz harness once over its seed corpus and its regression
# inputs (and the spec harness over the bad specs too). In every build
# with the plain drivers (replay_NAME); in a --enable-fuzzing build also
# with the libFuzzer binaries (fuzz_NAME -runs=0), which carry ASan, UBSan
# and LeakSanitizer. Prints "N passed, N failed, N skipped" last.
set -u
b=${CK_BUILDDIR:-.}
s=${CK_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
f=$s/tests/fuzz
pass=0 fail=0 skip=0

for name in spec dconf ecxml creds_ini sigv4 window; do
	set --
	for d in "$f/corpus/$name" "$f/regressions/$name"; do
		[ -d "$d" ] && set -- "$@" "$d"
	done
	[ "$name" = spec ] && [ -d "$f/badspecs" ] && set -- "$@" "$f/badspecs"
	if [ $# -eq 0 ]; then
		echo "SKIP: $name: no inputs"
		skip=$((skip + 1))
		continue
	fi
	if "$b/tests/fuzz/replay_$name" "$@"; then
		echo "PASS: replay_$name"
		pass=$((pass + 1))
	else
		echo "FAIL: replay_$name (exit $?)"
		fail=$((fail + 1))
	fi
	if [ -x "$b/tests/fuzz/fuzz_$name" ]; then
		if "$b/tests/fuzz/fuzz_$name" -runs=0 -timeout=5 \
		    -rss_limit_mb=1024 "$@" >"$b/tests/fuzz/replay-$name.log" 2>&1
		then
			echo "PASS: fuzz_$name -runs=0"
			pass=$((pass + 1))
		else
			tail -40 "$b/tests/fuzz/replay-$name.log"
			echo "FAIL: fuzz_$name -runs=0"
			fail=$((fail + 1))
		fi
	fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
