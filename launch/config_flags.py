"""Loading `configs/<name>.py` files and applying `--config.a.b=value` overrides.

The same override syntax as ml_collections' absl `config_flags` (`--config.train.batch_size=8`),
without absl's global flag state, so entry points can also be called from Python and tests.
Values are parsed as Python literals and must keep the type of the field they replace.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

PREFIX = "--config."


def load_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Calls `get_config()` (or `get_config(arg)`) of a config file given by path."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist")
  name = "_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def _parse(text: str, current):
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError) as e:
    raise ValueError(f"cannot parse {text!r} as a {type(current).__name__}") from e
  if isinstance(current, bool) or isinstance(value, bool):
    if not isinstance(value, bool) or not isinstance(current, bool):
      raise ValueError(f"{text!r}: expected a {type(current).__name__}")
  elif isinstance(current, float) and isinstance(value, int):
    value = float(value)
  elif isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
    value = type(current)(value)
  elif current is not None and not isinstance(value, type(current)):
    raise ValueError(f"{text!r}: expected a {type(current).__name__}")
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """Applies ["--config.a.b=v", ...] (also "--config.a.b v" pairs) to `config` in place."""
  items = list(overrides)
  i = 0
  while i < len(items):
    item = items[i]
    if not item.startswith(PREFIX):
      raise ValueError(f"unknown argument {item!r} (overrides look like --config.train.lr=1e-4)")
    if "=" in item:
      dotted, text = item[len(PREFIX):].split("=", 1)
    else:
      if i + 1 >= len(items):
        raise ValueError(f"{item} needs a value")
      dotted, text = item[len(PREFIX):], items[i + 1]
      i += 1
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      if p not in node:
        raise KeyError(f"--config.{dotted}: no field {p!r}")
      node = node[p]
    if leaf not in node:
      raise KeyError(f"--config.{dotted}: no field {leaf!r} (see the config file for the names)")
    node[leaf] = _parse(text, node[leaf])
    i += 1
  return config


def load(path: str, overrides=()) -> ml_collections.ConfigDict:
  """`path` may carry an argument after a colon (`configs/ablations/common.py:c`)."""
  arg = None
  if ":" in path and not os.path.isfile(path):
    path, arg = path.rsplit(":", 1)
  return apply_overrides(load_file(path, arg), overrides)
