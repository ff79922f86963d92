#!/bin/bash
# A fault campaign as a Slurm job array: array task i runs the deterministic share --shard i/N of the trials
# (trials t with t % N == i) into part<i>.jsonl; `flatenn summary part*.jsonl` merges the shares afterwards
# (submit.sh chains it as a dependent job). A task that is preempted or killed resumes where it stopped
# when run again (the results file is appended and resumable).
#
#   sbatch --array=0-3 examples/slurm/campaign-array.sh        # or: bash examples/slurm/submit.sh
#
# Settings (environment, exported to the job by sbatch's default --export=ALL):
#   FLATENN   the command (default: flatenn; e.g. "node /path/to/flatenn/dist/src/cli/main.js")
#   MODEL     deployed model (flatenn export)               (required)
#   OUT_DIR   shared folder for part<i>.jsonl               (default: results)
#   TRIALS    trials per (fault type, rate)                 (default: 100)
#   FAULTS    fault types                                   (default: bitflip,sa0,sa1)
#   RATES     fault rates                                   (default: 0,1%,2%,3%,4%,5%)
#   SEED      fault-map seed                                (default: 1)
#   DATA_DIR  dataset folder on the compute nodes           (default: flatenn's usual places)
#   EXTRA     more inject options, e.g. "--by-layer" or "--limit 1000"
#
#SBATCH --job-name=flatenn-campaign
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --output=flatenn-campaign-%A_%a.log
set -euo pipefail

: "${MODEL:?set MODEL to the deployed model file}"
: "${SLURM_ARRAY_TASK_ID:?run this script with sbatch --array=0-(N-1)}"
# The share of this task: index among the array's tasks (the array may not start at 0) and their number.
MIN=${SLURM_ARRAY_TASK_MIN:-0}
COUNT=${SLURM_ARRAY_TASK_COUNT:-$(( ${SLURM_ARRAY_TASK_MAX:-$SLURM_ARRAY_TASK_ID} - MIN + 1 ))}
I=$(( SLURM_ARRAY_TASK_ID - MIN ))
OUT_DIR=${OUT_DIR:-results}
mkdir -p "$OUT_DIR"

# shellcheck disable=SC2086 # FLATENN and EXTRA are word lists
${FLATENN:-flatenn} inject --model "$MODEL" \
  --faults "${FAULTS:-bitflip,sa0,sa1}" --rates "${RATES:-0,1%,2%,3%,4%,5%}" --trials "${TRIALS:-100}" --seed "${SEED:-1}" \
  ${DATA_DIR:+--data-dir "$DATA_DIR"} ${EXTRA:-} \
  --threads "${SLURM_CPUS_PER_TASK:-1}" \
  --shard "$I/$COUNT" --out "$OUT_DIR/part$I.jsonl" --quiet
