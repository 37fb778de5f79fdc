"""Shared fixtures: the read-only reference data beside the repo, and a small synthetic dataset."""

import os
import sys

import pytest

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
