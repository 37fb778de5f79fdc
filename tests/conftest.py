"""Shared fixtures: the read-only reference data beside the repo, and a small synthetic dataset."""

import os
import sys

import pytest

# Tests compile many small programs and run each a few times: XLA's CPU backend at optimisation
# level 0 compiles the train step ~25% faster. Set before anything imports jax; subprocesses
# (the sharding check, launch.* runs) inherit it, so their results stay comparable.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ is imported as a package from the checkout
SHARED = os.environ.get("SG_DETR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
QVH = os.path.join(SHARED, "reference", "qvhighlights")


@pytest.fixture(scope="session")
def qvh_reference():
  """Paths of the real QVHighlights files in ../shared (never copied into the repo)."""
  paths = {
      "train": os.path.join(QVH, "highlight_train_release.jsonl"),
      "val": os.path.join(QVH, "highlight_val_release.jsonl"),
      "preds": os.path.join(QVH, "sample_val_preds.jsonl"),
      "metrics": os.path.join(QVH, "sample_val_preds_metrics_raw.json"),
  }
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    pytest.fail(f"reference data missing (set SG_DETR_SHARED to the shared/ folder): {missing}")
  return paths


@pytest.fixture(scope="session")
def synthetic_tfds(tmp_path_factory):
  """A small synthetic QVHighlights-format dataset, generated and built once per session.

  Returns:
    dict(raw=<generator output folder>, data_dir=<TFDS data dir>).
  """
  from data_prep import build_tfds, synthetic

  root = tmp_path_factory.mktemp("synthetic")
  raw = str(root / "raw")
  synthetic.generate(raw, num_train=48, num_val=20, seed=3, video_dim=32, text_dim=24)
  data_dir = str(root / "tfds")
  build_tfds.build("qvhighlights", [os.path.join(raw, "annotations")],
                   [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                   data_dir)
  return {"raw": raw, "data_dir": data_dir}


def tiny_train_config(data):
  """The tiny config on the session's synthetic dataset (32-d video, 24-d text)."""
  from configs import tiny
  c = tiny.get_config()
  c.data.data_dir = data["data_dir"]
  c.data.video_dim, c.data.text_dim = 32, 24
  c.data.gt_files.val = os.path.join(data["raw"], "annotations", "val.jsonl")
  c.train.eval_batch_size = 8
  c.optim.warmup_epochs = 0
  c.optim.milestones = ()
  c.optim.lr = 1e-3
  return c


@pytest.fixture(scope="session")
def trained(synthetic_tfds, tmp_path_factory):
  """Two epochs of the tiny config (12 steps each) with evaluation, in a fresh workdir (read-only
  for tests: copy it before changing anything)."""
  from sg_detr_jax.training.loop import train_and_evaluate
  c = tiny_train_config(synthetic_tfds)
  c.train.num_epochs = 2
  workdir = str(tmp_path_factory.mktemp("run"))
  metrics = train_and_evaluate(c, workdir, progress=False)
  return c, workdir, metrics
