"""Scalars to TensorBoard (tensorboardX) and to `<workdir>/metrics.jsonl` (one line per write)."""

from __future__ import annotations

import json
import os

from tensorboardX import SummaryWriter


class MetricLogger:

  def __init__(self, workdir: str, enabled: bool = True):
    """`enabled` False (every process but the first of a multi-process run) writes nothing."""
    self.enabled = enabled
    if enabled:
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, prefix: str, scalars: dict[str, float]):
    if not self.enabled:
      return
    for k, v in scalars.items():
      self._tb.add_scalar(f"{prefix}/{k}", v, step)
    self._jsonl.write(json.dumps({"step": step, "split": prefix, **scalars}) + "\n")
    self._jsonl.flush()

  def close(self):
    if not self.enabled:
      return
    self._tb.close()
    self._jsonl.close()
