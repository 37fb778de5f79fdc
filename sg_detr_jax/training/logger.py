"""Training metrics: their mean over a logging window, written to TensorBoard and metrics.jsonl.

`WindowMean` sums the per-step metrics on the device and hands their mean to the host once per
log step. `MetricLogger` writes scalars to TensorBoard (tensorboardX, whose writer flushes in its
own thread) and appends one JSON object per write to `<workdir>/metrics.jsonl`:
{"step": ..., "split": "train" | "eval", **scalars}, the format benchmarks/ and tests read.
(clu.metric_writers is not used: clu 0.0.12 imports TensorFlow, for its TF SummaryWriter, as
soon as the package is imported, and this project does not depend on TensorFlow.)
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from tensorboardX import SummaryWriter

# One dispatch per training step, whatever the number of metrics (compiled once per metric set).
_add = jax.jit(lambda a, b: jax.tree_util.tree_map(jnp.add, a, b))


class WindowMean:
  """Mean of the training steps' metrics since the previous `result()`.

  The running sum stays on the device (no host transfer per step); `result()` fetches it once.
  A non-finite value at any step of the window makes that metric's mean non-finite, so a NaN
  loss is still seen at the next log step.
  """

  def __init__(self, last: tuple[str, ...] = ("lr",)):
    """`last`: metrics reported at the window's last step instead of averaged (the learning
    rate, a schedule value rather than a measurement)."""
    self._last = last
    self._sum = None
    self._latest = None
    self.count = 0

  def add(self, metrics: dict) -> None:
    """Adds one step's metrics: a dict of scalar device arrays."""
    self._sum = metrics if self._sum is None else _add(self._sum, metrics)
    self._latest = metrics
    self.count += 1

  def result(self) -> dict[str, float]:
    """{name: mean over the window} (floats), then starts a new window."""
    if not self.count:
      raise ValueError("no step added since the last result()")
    last = {k: v for k, v in self._latest.items() if k in self._last}
    sums, last = jax.device_get((self._sum, last))
    out = {k: float(v) / self.count for k, v in sums.items()}
    out.update({k: float(v) for k, v in last.items()})
    self._sum, self._latest, self.count = None, None, 0
    return out


class MetricLogger:
  """Scalars to `<workdir>/tensorboard` (tag "<split>/<name>") and `<workdir>/metrics.jsonl`."""

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
