#!/usr/bin/env bash
# Trains the same trial on cuda:0 and on the CPU with a prebuilt `sweep` binary (built with
# `cargo build --release --features cuda` on a machine with cargo; the GPU machine needs none),
# then prints both validation loss curves side by side and the time per epoch of each.
#
# Usage: scripts/gpu_check.sh SWEEP_BINARY DATA_CSV [OUT_DIR] [EXTRA sweep train ARGS...]
#   SWEEP_BINARY  the sweep binary built with --features cuda
#   DATA_CSV      the shipments file, e.g. mdlz_dry_shipments.csv
#   OUT_DIR       where the two runs go (default: a new temporary folder)
# Environment: EPOCHS (default 10), CATEGORY (default DRY), GPU_ONLY=1 skips the CPU run.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
sweep="$1"
data="$2"
out="${3:-$(mktemp -d)}"
shift $(( $# >= 3 ? 3 : 2 ))
epochs="${EPOCHS:-10}"
category="${CATEGORY:-DRY}"
mkdir -p "$out"

# The acceptance split: train to 2024-06-30, validation to 2024-12-31, test 2025.
cat > "$out/pipeline.yaml" <<YAML
split: {dates: {train_end: 2024-06-30, val_end: 2024-12-31}}
YAML

"$sweep" --version
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

run() {
    local device="$1"
    local dir="$out/${device/:/}"
    local started ended
    started=$(date +%s)
    "$sweep" train --data "$data" --category "$category" --config "$out/pipeline.yaml" \
        --set epochs="$epochs" --set early_stopping_patience="$epochs" \
        --device "$device" --out "$dir" "$@" 2> "$dir.log" || {
        echo "gpu_check: training on $device failed; log:" >&2
        cat "$dir.log" >&2
        return 1
    }
    ended=$(date +%s)
    echo "$device: $((ended - started)) s wall in all" >&2
}

run cuda:0 "$@"
if [ "${GPU_ONLY:-0}" != 1 ]; then
    run cpu "$@"
fi

echo
echo "validation loss per epoch (history.csv) and seconds per epoch"
python3 - "$out" <<'PY'
import csv, os, sys
out = sys.argv[1]
runs = {}
for name in ("cuda0", "cpu"):
    path = os.path.join(out, name, "history.csv")
    if os.path.exists(path):
        with open(path) as f:
            runs[name] = list(csv.DictReader(f))
epochs = max(len(r) for r in runs.values())
print("epoch  " + "  ".join(f"{n:>12}" for n in runs))
for e in range(epochs):
    cells = []
    for rows in runs.values():
        cells.append(f"{float(rows[e]['val_loss']):>12.5f}" if e < len(rows) else " " * 12)
    print(f"{e + 1:>5}  " + "  ".join(cells))
for name, rows in runs.items():
    if rows:
        per_epoch = float(rows[-1]["elapsed_s"]) / len(rows)
        print(f"{name}: {per_epoch:.3f} s/epoch over {len(rows)} epochs")
if len(runs) == 2 and all(runs.values()):
    a = float(runs["cpu"][-1]["elapsed_s"]) / len(runs["cpu"])
    b = float(runs["cuda0"][-1]["elapsed_s"]) / len(runs["cuda0"])
    print(f"speed-up cuda over cpu: {a / b:.2f}x")
PY
echo "runs in $out"
