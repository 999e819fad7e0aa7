#!/usr/bin/env bash
# Training speed of the CPU backend side by side with the PyTorch reference, in one run.
#
#   scripts/bench_vs_pytorch.sh REF_DIR [ROUNDS] [TRAININGS]
#
# REF_DIR is a writable copy of the PyTorch reference with its virtual environment installed
# (`cp -r ../shared/reference/pytorch_hybrid_lstm DIR && DIR/install.sh`). For every case the
# two implementations run alternately, ROUNDS times (default 2), so that both see the same
# machine: this 2-core VM's speed drifts by up to 2x over minutes. Each run reports the median
# of 5 timed epochs after a warm-up epoch, over 725 training samples. PyTorch runs with glibc's
# stock malloc and with the tuned one its reference results use, and the faster of the two
# counts (the reference's own rule). Printed: the median over rounds for each side, and the
# ratio.
#
# TRAININGS (default 1) above 1 measures a sweep's other lever, several trials at once: that
# many trainings run together, `bench_train --concurrent N` in one process, each training on
# its share of the cores as a sweep's trials are, against N PyTorch processes started together
# with the cores divided between them; each side's figure is the sum of its trainings'
# samples/s.
set -euo pipefail
cd "$(dirname "$0")/.."

ref="${1:?usage: scripts/bench_vs_pytorch.sh REF_DIR [ROUNDS] [TRAININGS]}"
rounds="${2:-2}"
trainings="${3:-1}"
python="$ref/.venv/bin/python"
[[ -x "$python" ]] || { echo "no $python: run $ref/install.sh first" >&2; exit 2; }
csv="$(cd .. && pwd)/shared/data/mdlz_dry_shipments.csv"
[[ -f "$csv" ]] || { echo "no data file $csv" >&2; exit 2; }
[[ "$trainings" =~ ^[1-9][0-9]*$ ]] || { echo "TRAININGS must be a positive integer" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sweep-target}" CARGO_INCREMENTAL=0
# The whole workspace, so that features unify as in every other build (no rebuild).
cargo build --quiet --workspace --examples
bench="$CARGO_TARGET_DIR/debug/examples/bench_train"
tuned="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184"
cores="$(nproc)"
threads=$(( cores / trainings > 0 ? cores / trainings : 1 ))

ours() {
  local extra=()
  (( trainings > 1 )) && extra=(--concurrent "$trainings")
  "$bench" --only "$1" --epochs 5 "${extra[@]}" | awk -v c="${1%%:*}" '$1 == c { print $3 }'
}
torch_one() { # CASE [GLIBC_TUNABLES]
  local hl="${1%%:*}" batch="${1##*:}"
  (cd "$ref" && env ${2:+GLIBC_TUNABLES=$2} "$python" bench.py --threads "$threads" --configs "$hl" \
    --batches "$batch" --infer-batches "" --wait-idle 0 --retries 0 --csv "$csv") |
    awk '/^train H=/ { print $6; exit }'
}
torch_rate() { # CASE [GLIBC_TUNABLES]: the sum over TRAININGS processes started together
  local dir pids=() i
  dir="$(mktemp -d)"
  for i in $(seq "$trainings"); do
    torch_one "$@" > "$dir/$i" & pids+=($!)
  done
  wait "${pids[@]}"
  cat "$dir"/* | awk '{ s += $1 } END { print s }'
  rm -rf "$dir"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

(( trainings > 1 )) && echo "$trainings trainings at once; PyTorch: $trainings processes of $threads thread(s)"
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
