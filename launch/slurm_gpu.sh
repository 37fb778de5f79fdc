#!/usr/bin/env bash
# SG-DETR on a SLURM GPU cluster: one process per node, all GPUs of the node in that process.
# Edit the #SBATCH lines, the paths and the config, then:  sbatch launch/slurm_gpu.sh
#SBATCH --job-name=sg-detr-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
#SBATCH --open-mode=append
# SIGTERM to every task 120 s before the time limit (SLURM also sends it on preemption): training
# stops at one step on all nodes, saves it and exits with 143. A preempted job is requeued with
# the same job id, hence the same WORKDIR, and resumes from that checkpoint; after a time limit,
# submit again with WORKDIR=<that workdir> to resume.
#SBATCH --signal=TERM@120
#SBATCH --requeue
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
. .venv/bin/activate  # pip install -e '.[cuda]' on the cluster beforehand
CONFIG=${CONFIG:-configs/qvhighlights.py}
WORKDIR=${WORKDIR:-workdirs/qvh_${SLURM_JOB_ID}}
# jax.distributed.initialize() reads the coordinator, process count and index from SLURM's
# environment; the global batch (config.train.batch_size) is split over every GPU of every node.
# Flags are absl's (--name=value, --noprogress); "$@" adds config overrides (--config.a.b=v).
srun python -m launch.train --distributed --noprogress --config="$CONFIG" --workdir="$WORKDIR" \
    --config.data.data_dir="${DATA_DIR:-tfds_data}" "$@"
