#!/usr/bin/env bash
# How much of each proxy's rank correlation is the initialization and the batch? The proxy zoo on
# seed 0's 1,000 NAS-Bench-201 cells under other network initializations and another batch, on one
# CUDA machine with many cores (one scoring process per core, CUDA MPS when it starts). Then, if
# time is left, the training GPU check (benchmarks/gpu_check.sh, synthetic batches).
#
#   LIMIT=240 OUT=runs/gpu_inits bash benchmarks/gpu_zoo_inits.sh
#
# Variants (init seed:batch offset) default to 1:0 2:0 0:64; init 0, offset 0 is the shipped
# benchmarks/results/nb201_zoo_3x1000.csv.gz. Results: $OUT/results.tar.gz (one merged
# scores.csv per variant, logs), $OUT/machine.txt, $OUT/train.txt.
OUT=${OUT:-runs/gpu_inits}
LIMIT=${LIMIT:-240}
N=${N:-1000}
SHARDS=${SHARDS:-5}
VARIANTS=${VARIANTS:-"1:0 2:0 0:64"}
WORK=${WORK:-/tmp/nb201_inits}
TRAIN=${TRAIN:-1}
. "$(dirname "$0")/gpu_common.sh" torch

ncores=$(nproc --all)
pids=()
core=0
for v in $VARIANTS; do
  init=${v%%:*} offset=${v##*:}
  for ((k = 0; k < SHARDS; k++)); do
    timeout "$LIMIT" taskset -c $((core % ncores)) $PY -m nas.evaluate --space nb201 --n "$N" --seeds 0 --init-seed "$init" \
      --batch-offset "$offset" --device "$DEVICE" --threads 1 --shard "$k/$SHARDS" \
      --out "$WORK/init${init}_off${offset}/$k" --no-progress >"$WORK/logs/init${init}_off${offset}_$k.log" 2>&1 &
    pids+=($!)
    core=$((core + 1))
  done
done
wait "${pids[@]}"
stop_mps

for v in $VARIANTS; do
  name=init${v%%:*}_off${v##*:}
  merge_shards "$WORK/$name" "$WORK/merged/$name" "$OUT/machine.txt"
done
tar czf "$OUT/results.tar.gz" -C "$WORK" merged logs
date -u >>"$OUT/machine.txt"

if [ "$TRAIN" = 1 ] && [ "$DEVICE" != cpu ]; then
  STEPS=${STEPS:-60} WARMUP=${WARMUP:-15} PYTHON=$PY timeout "${TRAIN_LIMIT:-150}" bash benchmarks/gpu_check.sh >"$OUT/train.txt" 2>&1
  echo "train rc=$?" >>"$OUT/train.txt"
fi
