#!/usr/bin/env bash
# SG-DETR on a Cloud TPU VM pod slice: the same command on every host of the slice.
#   TPU=my-v4-32 ZONE=us-central2-b bash launch/tpu_pod.sh [--config.x=...]
# Beforehand, on every host: clone the repo to ~/sg-detr-jax, `pip install -e '.[tpu]'`, and put
# the built TFDS dataset where DATA_DIR points (a GCS bucket path works: gs://bucket/tfds_data).
set -euo pipefail
TPU=${TPU:?set TPU to the TPU VM name}
ZONE=${ZONE:?set ZONE}
CONFIG=${CONFIG:-configs/qvhighlights.py}
WORKDIR=${WORKDIR:?set WORKDIR to a path every host can write, e.g. gs://bucket/workdirs/qvh}
DATA_DIR=${DATA_DIR:?set DATA_DIR}
# On Cloud TPU, jax.distributed.initialize() needs no arguments; orbax writes the checkpoint
# collectively from all hosts.
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/sg-detr-jax && . .venv/bin/activate && python -m launch.train --distributed --noprogress \
   --config=$CONFIG --workdir=$WORKDIR --config.data.data_dir=$DATA_DIR $*"
