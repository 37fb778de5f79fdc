"""Command-line plumbing shared by the entry points of launch/ and benchmarks/.

The entry points read their flags with absl, the config with ml_collections'
`config_flags.DEFINE_config_file`: `--config=configs/x.py[:arg]` (or `--config configs/x.py`) then
`--config.a.b=v` overrides. Those must name an existing field and parse as its type; otherwise
parsing stops with the field named. Each entry point also has a plain Python function that takes
the loaded config, which tests and notebooks call without absl's global flags. Two helpers:

- `load_config(path, overrides)` loads a config file by path with `--config.a.b=v` overrides, for
  Python callers. It runs ml_collections' own parser on a private `FlagValues`, so the overrides
  get the same checks as on the command line.
- `run(main)` is `absl.app.run(main)` that also accepts the argparse spellings these scripts had
  before (`--no-progress`, `--torch-checkpoint`): dashes in a flag's name become underscores, and
  `--no-x` becomes absl's `--nox`. It logs warnings and errors only (absl's default is INFO);
  `--verbosity=0` shows the libraries' INFO logs.

Several processes (`--distributed`, see `define_distributed_flags`): `Distributed.initialize()`
calls `jax.distributed.initialize` with the coordinator, process count and id from the flags or
the environment (auto-detected on SLURM, Cloud TPU and Open MPI when absent) and with explicit
timeouts, so that a process that dies or never starts ends the others with an error instead of a
hang.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app
from absl import flags
from ml_collections import config_flags


class UnknownFieldError(KeyError):
  """A `--config.a.b=v` override names no field of the config."""

  def __str__(self) -> str:
    return str(self.args[0])  # the message as written (KeyError would show its repr)


def load_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of `path` (`configs/x.py`, or `configs/x.py:arg` for `get_config(arg)`), locked.

  Args:
    path: a config file, optionally followed by `:arg`.
    overrides: command-line style overrides, e.g. `["--config.train.batch_size=8"]` (the value may
      also be the next item: `["--config.optim.lr", "1e-3"]`).

  Returns:
    The locked ConfigDict.

  Raises:
    UnknownFieldError (a KeyError): an override names no field ("no field: 'x'", with
      ml_collections' "Did you mean").
    absl.flags.Error: an override's value does not parse as the field's type.
  """
  argv = ["load_config", f"--config={path}", *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  try:
    rest = flag_values(argv)
  except (AttributeError, KeyError) as e:
    raise UnknownFieldError(_no_field(e)) from e
  if len(rest) > 1:
    raise ValueError(f"not a --config.a.b=v override: {rest[1:]}")
  config = flag_values.config
  if not isinstance(config, ml_collections.ConfigDict):
    config.lock()  # ml_collections' stand-in for a file that failed to load: raises its error
  return config


def define_config(default: str | None = None, note: str = "") -> None:
  """The `--config` flag of an entry point (ml_collections' `config_flags`; None: required)."""
  config_flags.DEFINE_config_file(
      "config", default, "configs/<name>.py[:arg]; fields are overridden with --config.a.b=v"
      + (f" {note}" if note else ""))
  if default is None:
    flags.mark_flag_as_required("config")


def config_args(name: str = "config") -> tuple[str, list[str]]:
  """After parsing: the config flag's file (with its `:arg`) and its overrides as `--config.a.b=v`
  strings, e.g. to start another process or call `load_config` with the same config."""
  flag = flags.FLAGS[name]
  overrides = config_flags.get_override_values(flag)
  return (config_flags.get_config_filename(flag),
          [f"--{name}.{k}={v}" for k, v in overrides.items()])


def no_positional_args(argv: Sequence[str]) -> None:
  """For an absl `main(argv)`: everything on the command line must have been a flag."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])} (flags look like --name=value, "
                         "config overrides like --config.train.batch_size=8)")


def _no_field(error: Exception) -> str:
  """The message of ml_collections' error for an override that names no field."""
  message = error
  while isinstance(message, BaseException) and message.args:  # AttributeError(KeyError(text))
    message = message.args[0]
  return f"a --config override names no field: {message}"


def _old_spelling(arg: str) -> str:
  if not arg.startswith("--") or arg.startswith("--config"):
    return arg
  name, eq, value = arg[2:].partition("=")
  if name.startswith("no-"):
    name = "no" + name[3:]
  return "--" + name.replace("-", "_") + eq + value


def _parse_flags(argv: list[str]) -> list[str]:
  if "--" in argv:  # everything after a bare `--` is left alone
    i = argv.index("--")
    argv = [_old_spelling(a) for a in argv[:i]] + argv[i:]
  else:
    argv = [_old_spelling(a) for a in argv]
  try:
    rest = app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:  # raised by ml_collections while parsing the overrides
    sys.exit(f"FATAL Flags parsing error: {_no_field(e)}")
  # absl.app raises the log level to INFO unless --verbosity is given. These scripts print their
  # own progress, so the libraries' INFO logs (orbax, jax) stay off as before; --verbosity=0 shows them.
  if flags.FLAGS["verbosity"].using_default_value:
    flags.FLAGS.verbosity = -1  # WARNING
  # ml_collections reports a config file that failed to load at its first use; say it now.
  config = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
  if config is not None and not isinstance(config, ml_collections.ConfigDict):
    try:
      config.lock()
    except OSError as e:
      sys.exit(f"FATAL Flags parsing error: --config: {e}")
  return rest


def run(main: Callable[[list[str]], object]) -> None:
  """absl.app.run(main) with the old flag spellings accepted (see the module docstring)."""
  app.run(main, flags_parser=_parse_flags)


# -- several processes ---------------------------------------------------------------------------
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
  """
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  init_timeout: int = 300
  heartbeat_timeout: int = 60
  shutdown_timeout: int = 120

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


def define_distributed_flags() -> None:
  """--distributed and how to join the run; read them back with `distributed_from_flags()`."""
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


def distributed_from_flags() -> Distributed | None:
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
