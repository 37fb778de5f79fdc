"""The official SG-DETR feature release layout ({vid}.pt, {qid}.npz[features]) next to the
Moment-DETR layout: identical TFDS builds, bit-exact conversion, the official normalisation / TEF /
padded-duration rules by hand, and clear errors."""

import json
import os
import sys

import numpy as np
import pytest

from data_prep import build_tfds, convert_features, synthetic
from data_prep.features import FeatureError, FeatureOptions, load_video
from sg_detr_jax.data.pipeline import ExampleProcessor
from sg_detr_jax.data.tfds_source import open_split

torch = pytest.importorskip("torch", reason="the official layout's .pt files need the torch extra")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
  root = tmp_path_factory.mktemp("layouts")
  md = str(root / "md")
  synthetic.generate(md, num_train=10, num_val=6, seed=5, video_dim=16, text_dim=12)
  off = str(root / "official")
  convert_features.convert("moment_detr", "official", os.path.join(md, "video_features"),
                           os.path.join(md, "text_features"), os.path.join(off, "video"),
                           os.path.join(off, "text"))
  return root, md, off


def _examples(data_dir, split):
  source, meta = open_split(data_dir, "qvhighlights", split)
  return [source[i] for i in range(len(source))], meta


def test_both_layouts_build_identical_datasets(layouts):
  root, md, off = layouts
  ann = os.path.join(md, "annotations")
  build_tfds.build("qvhighlights", [ann], [os.path.join(md, "video_features")],
                   os.path.join(md, "text_features"), str(root / "tfds_md"),
                   feature_layout="moment_detr")
  for layout in ("official", "auto"):  # explicit, and detected from the files
    build_tfds.build("qvhighlights", [ann], [os.path.join(off, "video")], os.path.join(off, "text"),
                     str(root / f"tfds_{layout}"), feature_layout=layout)
  assert sorted(os.listdir(os.path.join(off, "video")))[0].endswith(".pt")
  for split in ("train", "val"):
    ref, _ = _examples(str(root / "tfds_md"), split)
    for layout in ("official", "auto"):
      got, meta = _examples(str(root / f"tfds_{layout}"), split)
      assert len(got) == len(ref)
      for a, b in zip(ref, got):
        for k in a:
          np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_conversion_round_trip_is_bit_exact(layouts, tmp_path):
  _, md, off = layouts
  back = tmp_path / "back"
  counts = convert_features.convert("official", "moment_detr", os.path.join(off, "video"),
                                    os.path.join(off, "text"), str(back / "v"), str(back / "t"))
  assert counts["videos"] == len(os.listdir(os.path.join(md, "video_features")))
  for name in os.listdir(os.path.join(md, "video_features")):
    a = np.load(os.path.join(md, "video_features", name))["features"]
    b = np.load(back / "v" / name)["features"]
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    t = torch.load(os.path.join(off, "video", name[:-4] + ".pt"), weights_only=True)
    assert t.numpy().tobytes() == a.tobytes()
  for name in os.listdir(os.path.join(md, "text_features")):
    a = np.load(os.path.join(md, "text_features", name))["last_hidden_state"]
    b = np.load(back / "t" / name)["last_hidden_state"]
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert np.load(os.path.join(off, "text", name[3:]))["features"].tobytes() == a.tobytes()


def test_official_rules_on_a_three_clip_example(tmp_path):
  """Hand-computed: per-clip L2 normalisation BEFORE the TEF [t/3, t/3 + 1/3], per-token text
  normalisation, padding to 4 clips that count as valid, so the span normaliser is 4 x 2 s = 8 s."""
  (tmp_path / "v").mkdir()
  (tmp_path / "t").mkdir()
  (tmp_path / "ann").mkdir()
  video = np.array([[3, 4, 0, 0], [0, 0, 0, 2], [1, 1, 1, 1]], np.float32)
  torch.save(torch.from_numpy(video), tmp_path / "v" / "vidA_0.0_6.0.pt")
  text = np.array([[[0, 5, 0], [2, 0, 0]]], np.float32)  # [1, L, D], as in the release
  np.savez(tmp_path / "t" / "17.npz", features=text)
  rec = {"qid": 17, "query": "a person opens a door", "vid": "vidA_0.0_6.0", "duration": 6,
         "relevant_windows": [[2, 4]], "relevant_clip_ids": [1], "saliency_scores": [[4, 3, 2]]}
  (tmp_path / "ann" / "val.jsonl").write_text(json.dumps(rec) + "\n")
  data_dir = str(tmp_path / "tfds")
  build_tfds.build("qvhighlights", [str(tmp_path / "ann")], [str(tmp_path / "v")],
                   str(tmp_path / "t"), data_dir)  # layout detected: official
  source, meta = open_split(data_dir, "qvhighlights", "val")
  from configs import base
  cfg = base.get_config().data
  cfg.video_dim, cfg.text_dim = 4, 3
  ex = ExampleProcessor(cfg, meta, train=False)(source[0])
  eps = 1e-5
  clips = [[3 / (5 + eps), 4 / (5 + eps), 0, 0, 0, 1 / 3],
           [0, 0, 0, 2 / (2 + eps), 1 / 3, 2 / 3],
           [.5 / (1 + eps / 2)] * 4 + [2 / 3, 1.0],
           [0] * 6]  # the padding row
  np.testing.assert_allclose(ex["video"][:4], clips, rtol=1e-6, atol=1e-7)
  assert ex["video_mask"][:4].all() and not ex["video_mask"][4:].any()
  assert ex["span_seconds"] == 8.0 and ex["num_clips"] == 3 and ex["duration"] == 6.0
  np.testing.assert_allclose(ex["spans"][0], [3 / 8, 2 / 8])  # window [2, 4] s as (centre, width)
  np.testing.assert_allclose(ex["text"][:2], [[0, 5 / (5 + eps), 0], [2 / (2 + eps), 0, 0]],
                             rtol=1e-6)
  assert ex["text_mask"].tolist()[:3] == [True, True, False]


def test_pt_without_torch_says_what_to_install(tmp_path, monkeypatch):
  torch.save(torch.ones(3, 4), tmp_path / "v1.pt")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  opts = FeatureOptions(video_dirs=(str(tmp_path),), text_dir=str(tmp_path))
  with pytest.raises(FeatureError, match=r"v1\.pt: reading \.pt features.*needs torch.*"
                                         r"pip install.*convert_features"):
    load_video("v1", opts)


def test_pt_that_is_not_a_plain_tensor_is_refused(tmp_path):
  opts = FeatureOptions(video_dirs=(str(tmp_path),), text_dir=str(tmp_path))
  torch.save({"features": torch.ones(2, 2)}, tmp_path / "dict.pt")
  with pytest.raises(FeatureError, match=r"dict\.pt: expected a saved tensor"):
    load_video("dict", opts)

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

  torch.save(Evil(), tmp_path / "evil.pt")
  with pytest.raises(FeatureError, match=r"evil\.pt: unreadable, truncated or not a plain tensor"):
    load_video("evil", opts)
  assert not (tmp_path / "pwned").exists()
