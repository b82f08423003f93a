#!/usr/bin/env bash
# The proxy zoo on a benchmark space: every registered proxy and aggregate scored on
# the same sampled architectures with one batch of real CIFAR-10, Kendall tau / Spearman rho
# against CIFAR-10, CIFAR-100 and ImageNet16-120, and each proxy's time as a ratio to one plain
# forward+backward of the same network measured in the same run.
#
# Usage: benchmarks/proxy_zoo.sh [N] [SEEDS...]      (defaults: 1000 architectures, seeds 0 1 2)
#   N=200 on a small shared CPU: benchmarks/proxy_zoo.sh 200 0
# SPACE=nb101 or SPACE=darts for the other benchmark spaces (default nb201).
# Extra flags go through ZOO_ARGS, e.g. ZOO_ARGS="--threads 1 --proxies synflow wrcor sjw".
# The run resumes from runs/zoo/<space>_n<N>/; its table is also in <out>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
shift || true
SEEDS=("${@:-0 1 2}")
SPACE="${SPACE:-nb201}"
OUT="runs/zoo/${SPACE}_n${N}"
mkdir -p "$OUT"
# shellcheck disable=SC2068,SC2086
nice -n 10 .venv/bin/python -m nas.evaluate --space "$SPACE" --n "$N" --seeds ${SEEDS[@]} --batch-size 64 \
    --out "$OUT" --no-progress ${ZOO_ARGS:-} 2>&1 | tee "$OUT.log"
