# The common start of the GPU-machine recipes (benchmarks/gpu_*.sh) and the shell functions they
# share; sourced, not run, after the recipe has set OUT and WORK:
#
#   . "$(dirname "$0")/gpu_common.sh" torch timm   # the modules whose versions machine.txt lists
#
# It stops on unset variables, goes to the repository root, defaults PY=python3 and DEVICE=cuda,
# makes $OUT and $WORK/logs, keeps each process to one thread, writes $OUT/machine.txt (date, GPU,
# cores, module versions) and, unless DEVICE=cpu, starts CUDA MPS (mps=on or off, in machine.txt).

# start_mps WORK LOG PY: start CUDA MPS so that many processes' small kernels share the GPU; sets
# mps=on, or mps=off (and plain time-slicing) when the daemon does not start or a client cannot
# reach it. Stop it with stop_mps.
start_mps() {
  mps=off
  command -v nvidia-cuda-mps-control >/dev/null || return 0
  export CUDA_MPS_PIPE_DIRECTORY=$1/mps CUDA_MPS_LOG_DIRECTORY=$1/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d 2>>"$2" &&
    timeout 60 $3 -c "import torch; torch.ones(1, device='cuda').sum().item()" 2>>"$2"; then
    mps=on
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
}

stop_mps() {
  if [ "${mps:-off}" = on ]; then echo quit | nvidia-cuda-mps-control; fi
}

# merge_shards DIR DEST LOG: merge the run folders DIR/*/ (python -m nas.evaluate --shard) into one
# run folder DEST (config.json of the first, every candidates.csv concatenated, the header once)
# and append the row count to LOG; nothing when no shard wrote a file.
merge_shards() {
  local first
  first=$(ls "$1"/*/candidates.csv 2>/dev/null | head -1)
  [ -n "$first" ] || return 0
  mkdir -p "$2"
  cp "$(dirname "$first")/config.json" "$2/config.json"
  { head -1 "$first"; for f in "$1"/*/candidates.csv; do tail -n +2 "$f"; done; } >"$2/candidates.csv"
  echo "$(basename "$2"): $(($(wc -l <"$2/candidates.csv") - 1)) rows" >>"$3"
}

set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$WORK/logs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NAS_NO_PROGRESS=1

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cores: $(nproc --all)"
  $PY -c "import importlib, sys; print(*(f'{m} {importlib.import_module(m).__version__}' for m in sys.argv[1:]))" "$@"
} >"$OUT/machine.txt" 2>&1

# CUDA MPS lets the scoring processes' kernels run side by side.
mps=off
[ "$DEVICE" = cpu ] || start_mps "$WORK" "$OUT/machine.txt" "$PY"
echo "mps: $mps" >>"$OUT/machine.txt"
