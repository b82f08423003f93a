#!/usr/bin/env bash
# NAS-Bench-201 scoring on one CUDA machine with many cores, in one bounded run:
#   1. WRCor, SynFlow and JacCor on all 15,625 cells (python -m nas.evaluate --all, sharded),
#      the cache that benchmarks/search_nb201.py --cache turns into search-quality tables;
#   2. the proxy zoo on 3 x 1,000 sampled cells (python -m nas.evaluate, every proxy and aggregate, sharded);
#   3. on three spare CPU cores, the DDP search benchmark (benchmarks/search_ddp.py --n 200).
# Each scoring process drives the GPU from one CPU core; CUDA MPS is used when it starts, so the
# processes' small kernels can share the GPU. Every job is cut off after LIMIT seconds; the
# scores written so far stay (the CSVs are appended row by row and a rerun resumes).
#
#   LIMIT=420 OUT=runs/gpu bash benchmarks/gpu_nb201.sh
#
# Results: $OUT/results.tar.gz (the shards' scores.csv, logs), $OUT/ddp.txt, $OUT/machine.txt.
OUT=${OUT:-runs/gpu_nb201}
LIMIT=${LIMIT:-420}
ALL_SHARDS=${ALL_SHARDS:-7}
ZOO_SHARDS=${ZOO_SHARDS:-6}
WORK=${WORK:-/tmp/nb201_gpu}
. "$(dirname "$0")/gpu_common.sh" torch timm lightning

pids=()
core=0
for ((k = 0; k < ALL_SHARDS; k++)); do
  timeout "$LIMIT" taskset -c $core $PY -m nas.evaluate --space nb201 --all --proxies wrcor synflow jacob_cov \
    --device "$DEVICE" --threads 1 --shard "$k/$ALL_SHARDS" --out "$WORK/all/$k" --no-progress \
    >"$WORK/logs/all_$k.log" 2>&1 &
  pids+=($!)
  core=$((core + 1))
done
for ((k = 0; k < ZOO_SHARDS; k++)); do
  timeout "$LIMIT" taskset -c $core $PY -m nas.evaluate --space nb201 --n 1000 --seeds 0 1 2 \
    --device "$DEVICE" --threads 1 --shard "$k/$ZOO_SHARDS" --out "$WORK/zoo/$k" --no-progress \
    >"$WORK/logs/zoo_$k.log" 2>&1 &
  pids+=($!)
  core=$((core + 1))
done
n=$(nproc --all)
if ((n >= core + 3)); then
  (
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    CUDA_VISIBLE_DEVICES= timeout "$LIMIT" $PY benchmarks/search_ddp.py --n 200 --concurrent \
      --cpus-one $((n - 3)) --cpus-two $((n - 2)),$((n - 1))
  ) >"$OUT/ddp.txt" 2>&1 &
  pids+=($!)
else
  echo "skipped: $n cores leave none for the DDP benchmark" >"$OUT/ddp.txt"
fi
wait "${pids[@]}"
stop_mps

# One run folder per job, shards concatenated (the header once).
for job in all zoo; do
  merge_shards "$WORK/$job" "$WORK/merged/$job" "$OUT/machine.txt"
done
tar czf "$OUT/results.tar.gz" -C "$WORK" merged logs
date -u >>"$OUT/machine.txt"
