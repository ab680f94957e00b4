#!/usr/bin/env bash
# The main job: ST-CNN (affine) on RTS-MNIST with the default recipe, then the plain CNN under the
# same recipe and parameter budget. Each run writes runs/main/<name>/ with its report.md.
#
#   scripts/main_job.sh                # both runs (about 2 x 15 minutes on 2 CPU cores)
#   scripts/main_job.sh --epochs 1     # extra flags go to both `stnkit train` calls
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/main}
SEED=${SEED:-0}
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
  echo "torch: $($PY -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
} | tee "$OUT/machine.txt"
for model in st-cnn-affine cnn; do
  start=$(date +%s)
  $PY -m stnkit.cli train --dataset rts --model "$model" --seed "$SEED" --threads 2 \
    --out "$OUT/$model-rts" "$@"
  echo "$model: wall time $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"
done
