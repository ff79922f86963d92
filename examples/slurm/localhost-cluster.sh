#!/bin/bash
# Runs examples/slurm/campaign-array.sh for real on a one-node Slurm cluster on this machine (Debian's
# slurm-wlm + munge: munged, slurmctld and slurmd on localhost, as root), then the dependent summary job, and
# checks the merged parts against a local run of the same campaign. Everything lives in a temporary folder
# (its own slurm.conf, munge key and socket, unusual ports); the daemons are stopped at the end.
#
#   sudo bash examples/slurm/localhost-cluster.sh [N]       # N array tasks (default 3)
#
# Needs: apt-get install slurm-wlm munge (this script installs them when run as root), a built flatenn
# (bash scripts/setup.sh) and FashionMNIST (Debian's dataset-fashion-mnist), or MODEL/DATA_DIR of your own.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (slurmd must start jobs as their user)" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-3}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
D=$(mktemp -d /tmp/flatenn-slurm-XXXXXX)
chmod 755 "$D"
HOST=$(hostname -s)
PORT=${SLURM_TEST_PORT:-16817}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT

# munge: a private key and socket
mkdir -p "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1 count=1024 status=none
chmod 600 "$D/munge/munge.key"
munged --force --foreground --socket="$D/munge/sock" --key-file="$D/munge/munge.key" \
  --pid-file="$D/munge/pid" --log-file="$D/munge/log" --seed-file="$D/munge/seed" &
pids+=($!)

mkdir -p "$D/state" "$D/spool"
cat > "$D/slurm.conf" <<EOF
ClusterName=flatenn
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$D/munge/sock
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
NodeName=$HOST CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/slurm.conf"
sleep 1
slurmctld -D -i -f "$SLURM_CONF" &
pids+=($!)
slurmd -D -f "$SLURM_CONF" &
pids+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break; sleep 1; done
sinfo -h -o '%P %T %D %c' || { echo "the node did not come up; logs:" >&2; tail -20 "$D"/*.log >&2; exit 1; }

# The campaign: a LeNet-5 trained for a short epoch (speed and correctness do not depend on its accuracy).
FLATENN="$(command -v node) $ROOT/dist/src/cli/main.js"
if [ -z "${MODEL:-}" ]; then
  MODEL="$D/lenet5.safetensors"
  $FLATENN train --arch lenet5 --epochs 1 --limit-train 2000 --out "$D/lenet5.ckpt.safetensors" --quiet >/dev/null
  $FLATENN export --model "$D/lenet5.ckpt.safetensors" --out "$MODEL" >/dev/null
fi
export FLATENN MODEL OUT_DIR="$D/results" TRIALS=${TRIALS:-6} EXTRA="--limit ${LIMIT:-1000}" SBATCH_ARGS="--cpus-per-task=1"
mkdir -p "$OUT_DIR"
cd "$D"
bash "$ROOT/examples/slurm/submit.sh" "$N"
for _ in $(seq 600); do
  left=$(squeue -h -o '%i %T %r') || { echo "squeue failed" >&2; exit 1; }
  [ -z "$left" ] && break
  sleep 1
done
[ -z "$left" ] || { echo "jobs still queued after 600 s: $left" >&2; exit 1; }
[ -s "$OUT_DIR/summary.txt" ] || { echo "no summary was written; job logs:" >&2; tail -n 20 "$D"/flatenn-campaign-*.log "$D"/*.log >&2; exit 1; }
cat "$OUT_DIR/summary.txt"
ls "$OUT_DIR"/part*.jsonl
# the same campaign in one local process
$FLATENN inject --model "$MODEL" --faults bitflip,sa0,sa1 --rates 0,1%,2%,3%,4%,5% --trials "$TRIALS" --seed 1 $EXTRA \
  --out "$D/local.jsonl" --quiet >/dev/null
$FLATENN summary "$OUT_DIR"/part*.jsonl --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);process.stdout.write(JSON.stringify(j.summary))})' > "$D/parts.json"
$FLATENN summary "$D/local.jsonl" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);process.stdout.write(JSON.stringify(j.summary))})' > "$D/local.json"
if cmp -s "$D/parts.json" "$D/local.json"; then echo "slurm: $N array tasks + summary job ran; merged parts equal the local run"; else echo "slurm: merged parts DIFFER from the local run" >&2; exit 1; fi
