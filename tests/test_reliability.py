"""Reliability: damaged or mismatched checkpoints, zero-length videos, atomic writes, provenance.

(Interrupted training is tests/test_training.py::test_kill_9_mid_run_then_rerun_...; malformed
annotations, feature files, predictions and overrides have their tests beside their readers.)
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from data_prep.features import FeatureError, FeatureOptions, load_video
from sg_detr_jax import jsonl
from sg_detr_jax.training.checkpoints import CheckpointError, Checkpoints, load_params
from sg_detr_jax.training.loop import build


def test_zero_length_video_is_named(tmp_path):
  (tmp_path / "v").mkdir()
  np.savez(tmp_path / "v" / "vid1.npz", features=np.zeros((0, 8), np.float32))
  opts = FeatureOptions(video_dirs=(str(tmp_path / "v"),), text_dir=str(tmp_path))
  with pytest.raises(FeatureError, match=r"vid1\.npz: empty feature matrix \(0, 8\).*vid 'vid1'"):
    load_video("vid1", opts)


def test_checkpoint_of_another_config_lists_the_mismatches(trained):
  c, workdir, _ = trained
  other = c.copy_and_resolve_references()
  other.model.ffn_dim = c.model.ffn_dim * 2
  _, state, _, _ = build(other, 12)
  with pytest.raises(CheckpointError) as e:
    load_params(workdir, jax.eval_shape(lambda: state["params"]), "latest")
  msg = str(e.value)
  assert "does not fit this config" in msg and f"({c.model.ffn_dim * 2},)" in msg
  assert "linear1" in msg or "ffn" in msg  # the differing arrays are named


def test_truncated_checkpoint_directory_is_named(trained, tmp_path):
  c, workdir, _ = trained
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  step_dir = os.path.join(copy, "checkpoints", "24", "state")
  for name in os.listdir(step_dir):  # what a copy cut short leaves: metadata without the arrays
    if name not in ("_METADATA", "_CHECKPOINT_METADATA"):
      full = os.path.join(step_dir, name)
      shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
  _, state, _, _ = build(c, 12)
  ckpts = Checkpoints(copy)
  with pytest.raises(CheckpointError, match=r"checkpoints/24.*unreadable or truncated"):
    ckpts.restore(24, jax.eval_shape(lambda: state))
  ckpts.close()


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  path = str(tmp_path / "val_metrics.json")
  jsonl.write_json(path, {"MR-full-mAP": 1.0})

  class Boom(Exception):
    pass

  def broken_dumps(*args, **kwargs):
    raise Boom()

  monkeypatch.setattr(json, "dumps", broken_dumps)
  with pytest.raises(Boom):
    jsonl.write_jsonl(path, [{"qid": 1}])
  monkeypatch.undo()
  assert json.load(open(path)) == {"MR-full-mAP": 1.0}
  assert os.listdir(tmp_path) == ["val_metrics.json"]

  # A failure in the middle of writing (disk full, killed) never leaves a half file either.
  real_fsync = os.fsync

  def failing_fsync(fd):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", failing_fsync)
  with pytest.raises(OSError, match="No space"):
    jsonl.write_jsonl(path, [{"qid": i} for i in range(1000)])
  monkeypatch.setattr(os, "fsync", real_fsync)
  assert json.load(open(path)) == {"MR-full-mAP": 1.0}
  assert os.listdir(tmp_path) == ["val_metrics.json"]


def test_workdir_records_seed_config_versions_and_commit(trained):
  c, workdir, _ = trained
  prov = json.load(open(os.path.join(workdir, "provenance.json")))["runs"][-1]
  assert prov["seed"] == c.seed
  assert prov["packages"]["jax"] == jax.__version__
  assert prov["packages"]["numpy"] == np.__version__
  assert prov["git"]["commit"] == "unknown" or len(prov["git"]["commit"]) == 40
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["seed"] == c.seed and saved["model"]["d_model"] == c.model.d_model
