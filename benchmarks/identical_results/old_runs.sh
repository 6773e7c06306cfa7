#!/bin/bash
# Run directories written by an older version, used by this one: a search the older code started
# and was SIGKILLed in, resumed here, must end bit-identical to the older code's uninterrupted run;
# a finished search resumes; a train run, info, test and export read the older files.
# usage: benchmarks/identical_results/old_runs.sh OLD_SRC NEW_SRC WORK_DIR   (PYTHON: interpreter)
set -u
OLD=$(realpath "$1"); NEW=$(realpath "$2"); W=$3; PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
rm -rf "$W"; mkdir -p "$W"
old() { PYTHONPATH=$OLD $PY -m nasp "$@"; }
new() { PYTHONPATH=$NEW $PY -m nasp "$@"; }
q="--no-progress --no-plots"
old search --preset tiny --epochs 6 --seed 5 $q --out "$W/full" > /dev/null 2>&1
old search --preset tiny --space nb201 --seed 3 $q --out "$W/nb201" > /dev/null 2>&1
old train --preset tiny --seed 3 $q --out "$W/train" DARTS_V2 > /dev/null 2>&1
PYTHONPATH=$OLD $PY -m nasp search --preset tiny --epochs 6 --seed 5 $q --out "$W/killed" \
    > "$W/killed.log" 2>&1 &
pid=$!
epochs() { { wc -l < "$W/killed/metrics.jsonl"; } 2>/dev/null || echo 0; }
while [ "$(epochs)" -lt 2 ]; do sleep 0.2; done
kill -9 $pid; wait $pid 2>/dev/null
echo "older search killed after $(epochs) epochs; resumed here:"
new search --resume "$W/killed" $q | tail -1
$PY - "$W" <<'PY'
import sys, torch
w = sys.argv[1]
a, b = torch.load(f"{w}/full/arch.pt"), torch.load(f"{w}/killed/arch.pt")
print("resumed arch.pt equals the uninterrupted run's:", all(torch.equal(a[k], b[k]) for k in a))
PY
echo "finished older search resumed:"; new search --resume "$W/full" $q | tail -1
echo "train of an older nb201 search:"; new train "$W/nb201" --preset tiny --epochs 1 $q --out "$W/t" | tail -1
echo "info, test, export of an older train run:"
new info "$W/train/best.pt" | tail -1
new test "$W/train/best.pt" | tail -1
new export "$W/train/best.pt" --format torchscript --out "$W/model.pt" | tail -1
