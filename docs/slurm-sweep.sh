#!/bin/bash
# Run an experiment config as a Slurm job array, one shard of the grid per array task, then merge
# the shards' databases and write the report.
#
#   CONFIG=paper-configs/examples/rosenbrock-compare.json
#   jid=$(sbatch --parsable --array=0-7 docs/slurm-sweep.sh sweep "$CONFIG")
#   sbatch --dependency=afterok:$jid docs/slurm-sweep.sh merge "$CONFIG"
#
# The array must be 0..N-1 (N = SLURM_ARRAY_TASK_COUNT shards). A task that is requeued or
# rerun resumes from its shard database: finished runs are skipped, a run killed midway is redone.
# Add --quick after the config (EXTRA="--quick") to run the config's quick variant.
# OPTIMIZERS is the CLI, e.g. a published copy: dotnet publish src/Experiments -c Release -o $HOME/optimizers
#
#SBATCH --job-name=optimizers-sweep
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

MODE=${1:?usage: slurm-sweep.sh sweep|merge CONFIG}
CONFIG=${2:?usage: slurm-sweep.sh sweep|merge CONFIG}
OPTIMIZERS=${OPTIMIZERS:-optimizers}
RESULTS=${RESULTS:-results}
EXTRA=${EXTRA:-}
STEM=$(basename "$CONFIG" .json)
mkdir -p "$RESULTS" logs

case "$MODE" in
  sweep)
    N=${SLURM_ARRAY_TASK_COUNT:?run this mode as a job array: sbatch --array=0-N-1}
    I=${SLURM_ARRAY_TASK_ID}
    # One run per core, one TorchSharp thread per run.
    "$OPTIMIZERS" sweep "$CONFIG" $EXTRA --shard "$I/$N" \
      --jobs "${SLURM_CPUS_PER_TASK:-1}" --threads 1 \
      --db "$RESULTS/$STEM.shard-$I-of-$N.db"
    ;;
  merge)
    shopt -s nullglob
    shards=("$RESULTS/$STEM".shard-*-of-*.db)
    if [ ${#shards[@]} -eq 0 ]; then echo "no shard databases in $RESULTS" >&2; exit 2; fi
    "$OPTIMIZERS" merge "$RESULTS/$STEM.db" "${shards[@]}"
    "$OPTIMIZERS" report "$CONFIG" $EXTRA --db "$RESULTS/$STEM.db" --out "reports/$STEM"
    ;;
  *)
    echo "unknown mode '$MODE'; valid: sweep, merge" >&2
    exit 2
    ;;
esac
