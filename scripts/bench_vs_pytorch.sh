#!/usr/bin/env bash
# Training speed of the CPU backend side by side with the PyTorch reference, in one run.
#
#   scripts/bench_vs_pytorch.sh REF_DIR [ROUNDS]
#
# REF_DIR is a writable copy of the PyTorch reference with its virtual environment installed
# (`cp -r ../shared/reference/pytorch_hybrid_lstm DIR && DIR/install.sh`). For every case the
# two implementations run alternately, ROUNDS times (default 2), so that both see the same
# machine: this 2-core VM's speed drifts by up to 2x over minutes. Each run reports the median
# of 5 timed epochs after a warm-up epoch, over 725 training samples. PyTorch runs with glibc's
# stock malloc and with the tuned one its reference results use, and the faster of the two
# counts (the reference's own rule). Printed: the median over rounds for each side, and the
# ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

ref="${1:?usage: scripts/bench_vs_pytorch.sh REF_DIR [ROUNDS]}"
rounds="${2:-2}"
python="$ref/.venv/bin/python"
[[ -x "$python" ]] || { echo "no $python: run $ref/install.sh first" >&2; exit 2; }
csv="$(cd .. && pwd)/shared/data/mdlz_dry_shipments.csv"
[[ -f "$csv" ]] || { echo "no data file $csv" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sweep-target}" CARGO_INCREMENTAL=0
# The whole workspace, so that features unify as in every other build (no rebuild).
cargo build --quiet --workspace --examples
bench="$CARGO_TARGET_DIR/debug/examples/bench_train"
tuned="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184"

ours() { "$bench" --only "$1" --epochs 5 | awk -v c="${1%%:*}" '$1 == c { print $3 }'; }
torch_rate() { # CASE [GLIBC_TUNABLES]
  local hl="${1%%:*}" batch="${1##*:}"
  (cd "$ref" && env ${2:+GLIBC_TUNABLES=$2} "$python" bench.py --threads 2 --configs "$hl" \
    --batches "$batch" --infer-batches "" --wait-idle 0 --retries 0 --csv "$csv") |
    awk '/^train H=/ { print $6; exit }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-8s %6s %14s %16s %8s\n' model batch "sweep smp/s" "PyTorch smp/s" ratio
for case in 128x2:32 128x2:64 256x3:32 256x3:64; do
  mine=() theirs=()
  for _ in $(seq "$rounds"); do
    mine+=("$(ours "$case")")
    stock="$(torch_rate "$case")"
    fast="$(torch_rate "$case" "$tuned")"
    theirs+=("$(printf '%s\n%s\n' "$stock" "$fast" | sort -g | tail -1)")
  done
  m="$(printf '%s\n' "${mine[@]}" | median)"
  t="$(printf '%s\n' "${theirs[@]}" | median)"
  printf '%-8s %6s %14.0f %16.0f %7.2fx\n' "${case%%:*}" "${case##*:}" "$m" "$t" \
    "$(awk -v a="$m" -v b="$t" 'BEGIN { print a / b }')"
done
