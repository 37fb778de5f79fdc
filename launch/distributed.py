"""Joining a multi-process run: `Distributed` and the flags that build it.

`--distributed` (implied by `--coordinator`) makes an entry point call `Distributed.initialize()`,
i.e. `jax.distributed.initialize` with the coordinator, process count and id from the flags or the
environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`; auto-detected on
SLURM, Cloud TPU and Open MPI when absent) and with explicit timeouts, so that a process that dies
or never starts ends the others with an error instead of a hang. The flag plumbing shared by all
entry points (config loading, absl parsing) is in `launch/cli.py`.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app
from absl import flags


@dataclasses.dataclass(frozen=True)
class Distributed:
  """How this process joins a multi-process run (`jax.distributed.initialize`).

  Attributes:
    coordinator: "HOST:PORT" of process 0's coordinator service; None: $JAX_COORDINATOR_ADDRESS,
      else auto-detected (SLURM, Cloud TPU, Open MPI).
    num_processes: None: $JAX_NUM_PROCESSES, else auto-detected.
    process_id: this process, 0 .. num_processes - 1; None: $JAX_PROCESS_ID, else auto-detected.
    init_timeout: seconds every process waits for all the others to connect (the coordinator
      may start after the workers; nodes of a cluster can start minutes apart). Past it, the
      start fails with an error instead of waiting forever.
    heartbeat_timeout: seconds without a heartbeat after which the coordination service declares
      a process dead; the surviving processes then stop with an error naming it ("The following
      tasks are unhealthy (stopped sending heartbeats): <process ids>", measured: ~10 s after a
      SIGKILL with a 10 s timeout). Heartbeats come from a background thread, so a long
      compilation or evaluation does not count against it.
    shutdown_timeout: seconds a finishing process waits at exit for the others to finish too
      (processes that finish at different times, e.g. process 0 writing the last files).
    preemption_service: jax's preemption service (`jax_enable_preemption_service`): SIGTERM on
      any process becomes a notice that training reads (`training/preemption.py`: every process
      saves the same step and stops). Off, SIGTERM ends a process as usual (launch.evaluate, which
      has nothing to save).
  """
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  init_timeout: int = 300
  heartbeat_timeout: int = 60
  shutdown_timeout: int = 120
  preemption_service: bool = True

  def resolved(self) -> "Distributed":
    """The flags, with the JAX_* environment variables for the ones not given."""
    env = os.environ
    def env_int(name):
      value = env.get(name)
      if value in (None, ""):
        return None
      try:
        return int(value)
      except ValueError:
        raise ValueError(f"${name} = {value!r} is not an integer") from None
    return dataclasses.replace(
        self, coordinator=self.coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None,
        num_processes=(self.num_processes if self.num_processes is not None
                       else env_int("JAX_NUM_PROCESSES")),
        process_id=self.process_id if self.process_id is not None else env_int("JAX_PROCESS_ID"))

  def initialize(self) -> None:
    """Joins the run: must come before anything else touches jax's devices.

    On CPU, cross-process collectives go through gloo (jax's
    `jax_cpu_collectives_implementation`; without one a multi-process CPU run cannot all-reduce),
    so the same multi-process code runs on a laptop with simulated devices
    (`XLA_FLAGS=--xla_force_host_platform_device_count=N`). Accelerators use their own
    collectives (NCCL, ICI); the setting only concerns the CPU client.
    """
    import jax  # pylint: disable=g-import-not-at-top
    d = self.resolved()
    if d.num_processes is not None and d.process_id is not None and not (
        0 <= d.process_id < d.num_processes):
      raise ValueError(f"process id {d.process_id} is not in 0 .. {d.num_processes - 1}")
    jax.config.update("jax_enable_preemption_service", d.preemption_service)
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=d.coordinator, num_processes=d.num_processes,
        process_id=d.process_id, initialization_timeout=d.init_timeout,
        heartbeat_timeout_seconds=d.heartbeat_timeout,
        shutdown_timeout_seconds=d.shutdown_timeout)
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} local of {jax.device_count()} devices "
          f"({jax.devices()[0].platform})", file=sys.stderr, flush=True)


def define_flags() -> None:
  """--distributed and how to join the run; read them back with `from_flags()`."""
  defaults = Distributed()
  flags.DEFINE_bool("distributed", False,
                    "multi-process run: jax.distributed.initialize() (SLURM, Cloud TPU and Open "
                    "MPI are detected; otherwise give --coordinator, --num_processes, "
                    "--process_id or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, "
                    "$JAX_PROCESS_ID); implied by --coordinator")
  flags.DEFINE_string("coordinator", None,
                      "HOST:PORT of process 0's coordinator service (every process gives the "
                      "same one; default $JAX_COORDINATOR_ADDRESS or auto-detected)")
  flags.DEFINE_integer("num_processes", None, "processes in the run (default $JAX_NUM_PROCESSES "
                       "or auto-detected)", lower_bound=1)
  flags.DEFINE_integer("process_id", None, "this process, 0 .. num_processes - 1 (default "
                       "$JAX_PROCESS_ID or auto-detected)", lower_bound=0)
  flags.DEFINE_integer("init_timeout", defaults.init_timeout,
                       "seconds to wait for every process to connect, then fail",
                       lower_bound=1)
  flags.DEFINE_integer("heartbeat_timeout", defaults.heartbeat_timeout,
                       "seconds without a heartbeat before a process counts as lost: the others "
                       "then stop with an error naming it", lower_bound=1)
  flags.DEFINE_integer("shutdown_timeout", defaults.shutdown_timeout,
                       "seconds a finished process waits at exit for the others",
                       lower_bound=1)


def from_flags() -> Distributed | None:
  """The `Distributed` of the parsed flags; None for a single-process run."""
  f = flags.FLAGS
  if not (f.distributed or f.coordinator):
    for name in ("num_processes", "process_id"):
      if f[name].value is not None:
        raise app.UsageError(f"--{name} needs --distributed")
    return None
  return Distributed(coordinator=f.coordinator, num_processes=f.num_processes,
                     process_id=f.process_id, init_timeout=f.init_timeout,
                     heartbeat_timeout=f.heartbeat_timeout, shutdown_timeout=f.shutdown_timeout)


def join(spec: bool | Distributed, **changes) -> None:
  """Joins a multi-process run: `spec` True (auto-detected / the JAX_* environment) or a
  `Distributed` as given; `changes` replace its fields (e.g. preemption_service=False)."""
  spec = spec if isinstance(spec, Distributed) else Distributed()
  dataclasses.replace(spec, **changes).initialize()
