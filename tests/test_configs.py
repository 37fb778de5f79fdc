"""Every config builds, carries the override names outside scripts rely on, locks, and its
docstring says how to run it and what it measured."""

import glob
import os

import pytest

from launch import cli

REQUIRED = ["seed", "data.data_dir", "data.video_dim", "data.text_dim", "train.num_epochs",
            "train.batch_size", "optim.lr"]
CONFIGS = sorted(p for p in glob.glob("configs/**/*.py", recursive=True)
                 if not p.endswith(("__init__.py", "common.py", "_labels.py")))  # labels: data_prep


def test_every_dataset_config_exists():
  names = {os.path.basename(p) for p in CONFIGS}
  for n in ("base.py", "qvhighlights.py", "charades_sta.py", "tacos.py", "youtube_hl.py",
            "tvsum.py", "intervid_mr_pretrain.py", "qvhighlights_finetune.py", "synthetic.py",
            "tiny.py", "row_a.py", "row_e.py"):
    assert n in names, n


@pytest.mark.parametrize("path", CONFIGS)
def test_config_has_required_overrides(path):
  overrides = []
  for name in REQUIRED:
    c = cli.load_config(path)
    node = c
    for part in name.split("."):
      node = node[part]
    overrides.append(f"--config.{name}={node}")
  c = cli.load_config(path, overrides)
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.train.no_such_field = 1


@pytest.mark.parametrize("path", sorted(p for p in glob.glob("configs/**/*.py", recursive=True)
                                         if not p.endswith("__init__.py")))
def test_config_docstring_has_command_and_result(path):
  """big_vision style: every config file's docstring gives the command that runs it and a
  "Result" (the measurement, or why there is none)."""
  import ast
  with open(path, encoding="utf-8") as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  assert "python -m " in doc, f"{path}: no command in its docstring"
  assert "Result" in doc, f"{path}: no result (or 'not measured') in its docstring"
