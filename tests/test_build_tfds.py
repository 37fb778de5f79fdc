"""The TFDS builder: every dataset format, readable without the project, bad records reported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep import build_tfds
from data_prep.features import FeatureError
from sg_detr_jax.data.tfds_source import open_split


def test_synthetic_build_matches_files(synthetic_tfds):
  source, meta = open_split(synthetic_tfds["data_dir"], "qvhighlights", "val")
  assert len(source) == 20 and meta["video_dim"] == 32 and meta["qid_type"] == "int"
  ex = source[0]
  qid = ex["qid"].decode()
  raw = np.load(os.path.join(synthetic_tfds["raw"], "text_features", f"qid{qid}.npz"))
  text = raw["last_hidden_state"].astype(np.float32)
  np.testing.assert_allclose(ex["text_features"],
                             text / (np.linalg.norm(text, axis=1, keepdims=True) + 1e-5), rtol=1e-6)
  gt = {r["qid"]: r for r in map(json.loads, open(
      os.path.join(synthetic_tfds["raw"], "annotations", "val.jsonl")))}[int(qid)]
  np.testing.assert_array_equal(ex["windows"], gt["relevant_windows"])
  np.testing.assert_array_equal(np.nonzero(ex["relevant"])[0], sorted(gt["relevant_clip_ids"]))
  i = gt["relevant_clip_ids"][0]
  np.testing.assert_array_equal(ex["saliency"][i], gt["saliency_scores"][0])


def test_readable_without_the_project(synthetic_tfds):
  code = (
      "import sys, tensorflow_datasets as tfds\n"
      f"b = tfds.builder_from_directory({synthetic_tfds['data_dir']!r} + "
      "'/sg_detr_features/qvhighlights/1.0.0')\n"
      "ex = b.as_data_source('train')[0]\n"
      "assert ex['video_features'].shape[1] == 32\n"
      "assert not any(m.split('.')[0] in ('sg_detr_jax', 'data_prep') for m in sys.modules)\n"
      "print(len(b.as_data_source('train')))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "48"


def _small_dataset(tmp_path, records, videos, texts, text_name="qid{qid}.npz", ann="train.jsonl"):
  for sub in ("ann", "v", "t"):
    (tmp_path / sub).mkdir(exist_ok=True)
  (tmp_path / "ann" / ann).write_text("".join(json.dumps(r) + "\n" for r in records))
  for vid, arr in videos.items():
    np.savez(tmp_path / "v" / f"{vid}.npz", features=arr)
  for qid, arr in texts.items():
    np.savez(tmp_path / "t" / text_name.format(qid=qid), **arr)
  return [str(tmp_path / "ann")], [str(tmp_path / "v")], str(tmp_path / "t")


def test_charades_binary_saliency_from_overlap(tmp_path):
  # 1-s clips; window [1.4, 3.6]: clip 1 [1,2] overlaps 0.6 > 0.5 -> positive, clip 3 [3,4]
  # overlaps 0.6 -> positive, clip 2 fully inside; clip 0 and 4 no.
  rec = {"qid": 5, "query": "person opens a door.", "duration": 6.0, "vid": "AB123",
         "relevant_windows": [[1.4, 3.6]]}
  args = _small_dataset(tmp_path, [rec], {"AB123": np.random.rand(6, 8)},
                        {5: {"last_hidden_state": np.random.rand(4, 8)}})
  path, report = build_tfds.build("charades_sta", *args, str(tmp_path / "out"))
  source, meta = open_split(str(tmp_path / "out"), "charades_sta", "train")
  np.testing.assert_array_equal(source[0]["saliency"][:, 0], [0, 1, 1, 1, 0, 0])
  assert meta["clip_len"] == 1.0 and report["train"]["written"] == 1


def test_tacos_string_qids_and_file_names(tmp_path):
  rec = {"qid": "s34-d69_21", "query": "Add pepper.", "duration": 20.0, "vid": "s34-d69",
         "relevant_windows": [[4.0, 9.0]]}
  args = _small_dataset(tmp_path, [rec], {"s34-d69": np.random.rand(10, 8)},
                        {"s34-d69_21": {"last_hidden_state": np.random.rand(3, 8)}},
                        text_name="{qid}.npz", ann="tacos_test_release.jsonl")
  build_tfds.build("tacos", *args, str(tmp_path / "out"))
  source, meta = open_split(str(tmp_path / "out"), "tacos", "test")
  assert source[0]["qid"] == b"s34-d69_21" and meta["qid_type"] == "str"


def test_tvsum_labels_cut_the_video(tmp_path):
  label = np.random.randint(1, 6, size=(7, 20)).astype(float).tolist()
  rec = {"qid": "v1", "vid": "v1", "query": "BBC - Train crash", "duration": 7, "label": label,
         "domain": "VU", "relevant_windows": None, "relevant_clip_ids": None}
  args = _small_dataset(tmp_path, [rec], {"v1": np.random.rand(9, 8)},
                        {"v1": {"token": np.random.rand(3, 8)}}, text_name="{qid}.npz",
                        ann="tvsum_val.jsonl")
  build_tfds.build("tvsum", *args, str(tmp_path / "out"))
  ex = open_split(str(tmp_path / "out"), "tvsum", "val")[0][0]
  assert ex["video_features"].shape == (7, 8)  # cut to the 7 label rows
  np.testing.assert_array_equal(ex["saliency"], label)
  assert ex["domain"] == b"VU"


def test_youtube_highlights(tmp_path):
  rec = {"qid": "yt1", "vid": "yt1", "query": "dog", "duration": 5.0, "domain": "dog",
         "label": [[0], [1], [1], [0], [0]], "relevant_windows": None}
  args = _small_dataset(tmp_path, [rec], {"yt1": np.random.rand(5, 8)},
                        {"yt1": {"last_hidden_state": np.random.rand(2, 8)}},
                        text_name="{qid}.npz")
  build_tfds.build("youtube_hl", *args, str(tmp_path / "out"))
  ex = open_split(str(tmp_path / "out"), "youtube_hl", "train")[0][0]
  np.testing.assert_array_equal(ex["relevant"], [0, 1, 1, 0, 0])
  # Raw (not normalised) text for YouTube-HL, as the reference loaders do.
  assert np.linalg.norm(ex["text_features"][0]) > 1.01 or np.linalg.norm(ex["text_features"][0]) < .99


def _qvh_records(n):
  return [{"qid": i, "query": f"query {i}", "duration": 8, "vid": f"vid{i}_0.0_150.0",
           "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 4]],
           "relevant_windows": [[2, 6]]} for i in range(n)]


def test_bad_feature_fails_or_is_skipped_and_reported(tmp_path):
  videos = {f"vid{i}_0.0_150.0": np.random.rand(4, 8) for i in range(3)}
  texts = {i: {"last_hidden_state": np.random.rand(3, 8)} for i in range(3)}
  texts[2] = {"last_hidden_state": np.array([[np.nan] * 8])}
  args = _small_dataset(tmp_path, _qvh_records(3), videos, texts)
  with pytest.raises(FeatureError, match=r"train.jsonl:3: .*qid2.npz: NaN"):
    build_tfds.build("qvhighlights", *args, str(tmp_path / "a"))
  path, report = build_tfds.build("qvhighlights", *args, str(tmp_path / "b"),
                                  skip_bad_records=True)
  assert report["train"]["written"] == 2 and report["train"]["skipped"] == 1
  assert "qid2.npz" in report["train"]["skipped_records"][0]
  assert json.load(open(os.path.join(path, "build_report.json")))["train"]["skipped"] == 1


def test_wrong_dimension_is_named(tmp_path):
  videos = {f"vid{i}_0.0_150.0": np.random.rand(4, 8 if i < 1 else 6) for i in range(2)}
  texts = {i: {"last_hidden_state": np.random.rand(3, 8)} for i in range(2)}
  args = _small_dataset(tmp_path, _qvh_records(2), videos, texts)
  with pytest.raises(FeatureError, match="video features of qid '1'.*dimension 6, expected 8"):
    build_tfds.build("qvhighlights", *args, str(tmp_path / "a"))


def test_cli_split_pairs_and_errors(tmp_path, capsys):
  videos = {f"vid{i}_0.0_150.0": np.random.rand(4, 8) for i in range(2)}
  texts = {i: {"last_hidden_state": np.random.rand(3, 8)} for i in range(2)}
  (ann,), (vdir,), tdir = _small_dataset(tmp_path, _qvh_records(2), videos, texts)
  rc = build_tfds.main(["--dataset", "qvhighlights", "--annotations",
                        f"dev={ann}/train.jsonl", "--video-features", vdir, "--text-features",
                        tdir, "--data-dir", str(tmp_path / "o")])
  assert rc == 0 and "dev: 2 examples" in capsys.readouterr().out
  rc = build_tfds.main(["--dataset", "qvhighlights", "--annotations", "nonsense",
                        "--video-features", vdir, "--text-features", tdir, "--data-dir", "x"])
  assert rc == 2 and "SPLIT=PATH" in capsys.readouterr().err


def test_split_names_from_official_file_names(tmp_path):
  for name in ("highlight_train_release.jsonl", "highlight_val_release.jsonl",
               "highlight_test_release.jsonl", "highlight_test_with_gt.jsonl", "README.md"):
    (tmp_path / name).write_text("")
  splits = build_tfds.discover_splits([str(tmp_path)])
  assert {k: os.path.basename(v) for k, v in splits.items()} == {
      "train": "highlight_train_release.jsonl", "val": "highlight_val_release.jsonl",
      "test": "highlight_test_release.jsonl", "test_with_gt": "highlight_test_with_gt.jsonl"}
