#!/bin/bash
# Fixed-seed runs of one version of the sources, for comparing two versions' results.
# usage: benchmarks/identical_results/run.sh SRC_DIR OUT_DIR   (PYTHON: the interpreter to use;
#        TRAIN_ARGS: options added to the trainings, e.g. "--val-fraction 0" for a version whose
#        tiny preset holds out a validation split, to compare with one that did not)
# e.g.   git worktree add /tmp/old <rev> && run.sh /tmp/old/src /tmp/before && run.sh src /tmp/after
#        python benchmarks/identical_results/compare.py /tmp/before /tmp/after
set -e
SRC=$(realpath "$1"); OUT=$2; PY=${PYTHON:-python}
rm -rf "$OUT"; mkdir -p "$OUT"
export PYTHONPATH=$SRC OMP_NUM_THREADS=1
run() { name=$1; shift; $PY -m nasp "$@" --seed 3 --no-progress --no-plots --out "$OUT/$name" > "$OUT/$name.log" 2>&1; }
run s-nasp-darts search --preset tiny
run s-nasp-nb201 search --preset tiny --space nb201
run s-darts2 search --preset tiny --strategy darts2
run s-rws search --preset tiny --strategy random-ws --space nb201
run t-darts train --preset tiny ${TRAIN_ARGS:-} "$OUT/s-nasp-darts"
run t-nb201 train --preset tiny ${TRAIN_ARGS:-} "$OUT/s-nasp-nb201"
run t-v2 train --preset tiny ${TRAIN_ARGS:-} DARTS_V2
echo "runs written to $OUT"
