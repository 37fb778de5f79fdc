"""Preemption: SIGTERM ends training at a step every process agrees on, with a checkpoint there.

Schedulers give notice before they take a machine back with SIGTERM (SLURM's `scancel` and
time limit, Kubernetes, Cloud TPU maintenance events). Without this module a run lost everything
since its last epoch checkpoint. In a multi-process run it was worse: `jax.distributed.initialize`
turns on jax's preemption service, which replaces the default SIGTERM action (exit) with a notice
to the coordination service. The signal was swallowed and the run went on as if nothing had
happened.

`Preemption.reached(step)`, called after every train step on every process, asks:
- several processes: jax's preemption sync point (`multihost_utils.reached_preemption_sync_point`,
  the mechanism under orbax's `CheckpointManager.reached_preemption`). A SIGTERM on any process is
  shared through the coordination service, and every process gets True at the same step (one past
  the largest step any process had reached). So all processes save one consistent checkpoint
  together.
- one process: a Python SIGTERM handler, installed for the duration of the `with` block, sets a
  flag. The previous handler is restored on exit.
The training loop then saves the step reached and raises `Preempted`; re-running the same command
resumes from it exactly (the data iterator's state is the step).
"""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Training stopped on a preemption notice; `step` was saved in `directory`."""

  def __init__(self, step: int, directory: str):
    super().__init__(f"preempted (SIGTERM): stopped at step {step}, checkpoint saved in "
                     f"{directory}; run the same command again to resume")
    self.step, self.directory = step, directory


class Preemption:
  """`with Preemption() as p:` ... `if p.reached(step): <save, stop>` (see the module docstring)."""

  def __init__(self):
    self._signalled = threading.Event()
    self._previous = None
    self._installed = False

  def __enter__(self) -> "Preemption":
    # Several processes: jax's own handler reports the signal to the coordination service. A
    # Python handler would replace it, and then the other processes would never hear of the signal.
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    return self

  def __exit__(self, *exc) -> None:
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False

  def _on_sigterm(self, signum, frame) -> None:  # pylint: disable=unused-argument
    self._signalled.set()

  def reached(self, step: int) -> bool:
    """True when training must stop after `step` (call it after every step, on every process)."""
    if self._signalled.is_set():
      return True
    if jax.process_count() == 1:
      return False
    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service=False)
      return False
