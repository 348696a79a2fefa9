#!/usr/bin/env bash
# A few seconds of each fuzz target (make fuzz-short). Go's fuzzing engine
# sometimes ends a run at -fuzztime with "context deadline exceeded" when a
# worker is slow to stop on a loaded machine, without any failing input: such
# a run is tried once more. A real finding (a failing input written to
# testdata/fuzz) fails at once.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
for spec in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
	dir=$(dirname "$spec")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$spec" | sed 's/func //'); do
		echo "fuzz $dir $f"
		for try in 1 2; do
			out=$(mktemp)
			if $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" "$dir" 2>&1 | tee "$out"; [ "${PIPESTATUS[0]}" = 0 ]; then
				rm -f "$out"
				break
			fi
			if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$out" && ! grep -qi 'failing input' "$out"; then
				echo "fuzz $dir $f: the engine timed out stopping (no failing input); once more"
				rm -f "$out"
				continue
			fi
			rm -f "$out"
			exit 1
		done
	done
done
