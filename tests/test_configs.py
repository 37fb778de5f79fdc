"""Every config builds, carries the override names outside scripts rely on, and locks."""

import glob
import os

import pytest

from launch import config_flags

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
    c = config_flags.load(path)
    node = c
    for part in name.split("."):
      node = node[part]
    overrides.append(f"--config.{name}={node}")
  c = config_flags.load(path, overrides)
  c.lock()
  with pytest.raises(AttributeError):
    c.train.no_such_field = 1
