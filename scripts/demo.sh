#!/usr/bin/env bash
# `make demo`: start the bundled Loops emulator on a free loopback port, sync sample_data/ into it
# twice (the second run sends nothing), preview a later export, then stop the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
work=.demo
rm -rf "$work" && mkdir -p "$work"

bulksync emulator --port 0 --ready-file "$work/url" >"$work/emulator.log" 2>&1 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true; wait "$emulator" 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -s "$work/url" ] && break; sleep 0.05; done
[ -s "$work/url" ] || { echo "the emulator did not start; see $work/emulator.log" >&2; exit 1; }

export LOOPS_BASE_URL="$(cat "$work/url")" LOOPS_API_KEY=test-key
echo "Loops emulator at $LOOPS_BASE_URL"

run() {
    echo
    echo "\$ bulksync $*"
    bulksync "$@"
}
run sync sample_data/contacts.csv --state "$work/state.db" --report "$work/first-run.csv" --create-properties
echo
echo "First lines of the report ($work/first-run.csv):"
head -n 6 "$work/first-run.csv"
run sync sample_data/contacts.csv --state "$work/state.db" --report "$work/second-run.csv"
run sync sample_data/contacts_changed.csv --state "$work/state.db" --report "$work/preview.csv" --dry-run
run sync sample_data/contacts_changed.csv --state "$work/state.db" --report "$work/third-run.csv"
