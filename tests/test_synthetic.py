"""The synthetic generator: deterministic, valid format, and learnable-but-not-trivial."""

import filecmp
import os

import numpy as np

from data_prep import synthetic
from data_prep.annotations import read_annotations
from sg_detr_jax import jsonl
from sg_detr_jax.baselines import cosine
from sg_detr_jax.data.datasets import get_spec
from sg_detr_jax.evaluation import evaluate


def test_deterministic_from_seed(tmp_path):
  for name in ("a", "b"):
    synthetic.generate(str(tmp_path / name), num_train=10, num_val=4, seed=5, video_dim=16,
                       text_dim=16)
  cmp = filecmp.dircmp(tmp_path / "a" / "annotations", tmp_path / "b" / "annotations")
  assert not cmp.diff_files and cmp.same_files
  for sub in ("video_features", "text_features"):
    names = sorted(os.listdir(tmp_path / "a" / sub))
    assert names == sorted(os.listdir(tmp_path / "b" / sub))
    for n in names:
      a, b = np.load(tmp_path / "a" / sub / n), np.load(tmp_path / "b" / sub / n)
      for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_valid_qvhighlights_format(synthetic_tfds):
  spec = get_spec("qvhighlights")
  anns = read_annotations(os.path.join(synthetic_tfds["raw"], "annotations", "train.jsonl"), spec)
  assert len(anns) == 48
  assert all(120 <= a.duration <= 150 and 1 <= len(a.windows) <= 5 for a in anns)


def test_cosine_baseline_above_chance_far_from_perfect(tmp_path):
  raw = str(tmp_path / "raw")
  synthetic.generate(raw, num_train=4, num_val=120, seed=11)
  from data_prep import build_tfds
  build_tfds.build("qvhighlights", [os.path.join(raw, "annotations")],
                   [os.path.join(raw, "video_features")], os.path.join(raw, "text_features"),
                   str(tmp_path / "tfds"))
  gt = jsonl.read_jsonl(os.path.join(raw, "annotations", "val.jsonl"))
  m = {k: evaluate(cosine.predict(str(tmp_path / "tfds"), "qvhighlights", "val", k), gt)["brief"]
       for k in ("cosine", "chance")}
  assert m["cosine"]["HL-min-VeryGood-mAP"] > m["chance"]["HL-min-VeryGood-mAP"] + 10
  assert m["cosine"]["MR-full-mAP"] > m["chance"]["MR-full-mAP"] + 2
  assert m["cosine"]["HL-min-VeryGood-mAP"] < 70 and m["cosine"]["MR-full-mAP"] < 30
