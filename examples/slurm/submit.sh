#!/bin/bash
# Submits the campaign array (N tasks, default 4) and a summary job that runs when every task has succeeded:
#   MODEL=lenet.safetensors TRIALS=100 bash examples/slurm/submit.sh [N]
# The summary (flatenn summary part*.jsonl) lands in $OUT_DIR/summary.txt. SBATCH_ARGS adds sbatch options
# (they override the script's #SBATCH lines), e.g. SBATCH_ARGS="--cpus-per-task=16 --partition=long".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${1:-4}
OUT_DIR=${OUT_DIR:-results}
export OUT_DIR
# shellcheck disable=SC2086 # SBATCH_ARGS is a word list
array=$(sbatch --parsable --array="0-$((N - 1))" ${SBATCH_ARGS:-} "$here/campaign-array.sh")
array=${array%%;*}
# shellcheck disable=SC2086
sbatch --parsable ${SBATCH_ARGS:-} --job-name=flatenn-summary --dependency="afterok:$array" --output="$OUT_DIR/summary.txt" \
  --wrap "${FLATENN:-flatenn} summary $OUT_DIR/part*.jsonl"
echo "campaign array $array; summary in $OUT_DIR/summary.txt when it has finished"
