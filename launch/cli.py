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

The multi-process join (`--distributed`) is in `launch/distributed.py`.
"""

from __future__ import annotations

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
  # own progress, so the libraries' INFO logs (orbax, jax) stay off as before; --verbosity=0
  # shows them.
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
