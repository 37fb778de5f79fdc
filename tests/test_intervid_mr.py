"""InterVid-MR pseudo-labelling: hand-checked eq. 16-18, filtering, trimming, and the local / process
pool / Beam runners producing the same dataset."""

import collections
import json
import os

import numpy as np
import pytest

from configs import intervid_mr_labels
from data_prep import intervid_mr as im
from data_prep import synthetic
from data_prep.annotations import read_annotations
from sg_detr_jax.data.datasets import get_spec

from conftest import TEXT_DIM, VIDEO_DIM


def cfg(**overrides):
  c = intervid_mr_labels.get_config()
  c.update(overrides)
  return c


def clips_with_cosines(cos):
  """[T, 2] clips whose cosine with the caption [1, 0] are `cos` (scaled, to check the norms)."""
  cos = np.asarray(cos, np.float64)
  return np.stack([cos, np.sqrt(1 - cos ** 2)], axis=1) * np.arange(1, len(cos) + 1)[:, None]


COS = [0.1, 0.2, 0.9, 0.8, 1.0, 0.3, 0.85, 0.95, 0.1, 0.0]
CAPTION = im.Caption(qid=7, ytid="abc_def-123", text="a dog is running on the beach", start=4.0,
                     end=10.0, where="captions.jsonl:8")


def test_labels_by_hand_mean_std_rule():
  rec = im.label_caption(CAPTION, clips_with_cosines(COS), np.array([2.0, 0.0]), cfg())
  # S+ = clips 2, 3, 4 (4-10 s): mu 0.9, sigma 0.0816 -> tau 0.8184; clip 3 (0.8) falls below it.
  assert rec["threshold"] == pytest.approx(0.9 - np.sqrt(0.02 / 3), abs=1e-6)
  assert rec["relevant_windows"] == [[4.0, 6.0], [8.0, 10.0], [12.0, 16.0]]
  assert rec["relevant_clip_ids"] == [2, 4, 6, 7]
  # Grades: ceil(4 (s - tau) / (1.0 - tau)) for s = 0.9, 1.0, 0.85, 0.95 -> 2, 4, 1, 3.
  assert rec["saliency_scores"] == [[2] * 3, [4] * 3, [1] * 3, [3] * 3]
  assert rec["vid"] == "abc_def-123_0.0_20.0" and rec["duration"] == 20.0
  assert rec["qid"] == 7 and rec["query"] == CAPTION.text
  # The record is valid QVHighlights-format input (windows <-> clip ids, 3 annotators).
  from data_prep.annotations import parse_record
  parse_record(rec, get_spec("intervid_mr"), "test")


def test_threshold_and_grade_rules():
  inside = np.array([0.9, 0.8, 1.0])
  assert im.threshold(inside, cfg(threshold_rule="min")) == pytest.approx(0.8)
  assert im.threshold(inside, cfg(threshold_rule="mean")) == pytest.approx(0.9)
  assert im.threshold(inside, cfg(threshold_rule="percentile", threshold_percentile=50.0)) == \
      pytest.approx(0.9)
  rec = im.label_caption(CAPTION, clips_with_cosines(COS), np.array([1.0, 0.0]),
                         cfg(threshold_rule="min"))
  assert rec["relevant_windows"] == [[4.0, 10.0], [12.0, 16.0]]
  # sigma_cuts: 1 + [s >= mu] + [s >= mu + sigma] + [s >= mu + 2 sigma] with mu 0.9, sigma 0.0816.
  g = im.grades(np.array([0.85, 0.9, 0.95, 1.0]), inside, cfg(grade_rule="sigma_cuts"))
  assert g.tolist() == [1, 2, 2, 3]
  with pytest.raises(ValueError, match="threshold_rule"):
    im.threshold(inside, cfg(threshold_rule="median"))


def test_one_clip_interval_keeps_its_clip():
  cap = im.Caption(1, "v", "a cat is sleeping", 6.2, 7.0, "x:1")  # inside clip 3 only, < half of it
  rec = im.label_caption(cap, clips_with_cosines([0.1, 0.2, 0.3, 0.6, 0.2]), np.array([1.0, 0.0]),
                         cfg())
  assert rec["relevant_clip_ids"] == [3] and rec["saliency_scores"] == [[4] * 3]


def test_segment_trimming():
  c = cfg()
  assert im.segment_clips(300, 320, 200, c) == (117, 192)  # centred, 75 clips
  assert im.segment_clips(390, 400, 200, c) == (125, 200)  # shifted at the end
  assert im.segment_clips(0, 3, 200, c) == (0, 75)  # and at the start
  assert im.segment_clips(10, 20, 30, c) == (0, 30)  # a short video is kept whole
  for start, end in ((1.0, 149.5), (0.5, 150.0)):
    lo, hi = im.segment_clips(start, end, 200, c)
    assert lo * 2 <= start and end <= hi * 2 and hi - lo == 75
  with pytest.raises(im.SkipCaption) as e:
    im.segment_clips(10, 170, 200, c)
  assert e.value.reason == "interval_longer_than_segment"


@pytest.mark.parametrize("text,reason", [
    ("a man", "filter_min_words"), ("the the the the the", "filter_repeated_words"),
    ("clip 0012 3344 5566 at 00:12:33 ###", "filter_alpha_ratio"), ("A black screen with white text", "filter_banned_pattern"),
    ("not sure what is happening", "filter_banned_pattern"), ("a man is cooking pasta", None)])
def test_caption_filter(text, reason):
  assert im.filter_reason(text, cfg().filter) == reason


@pytest.mark.parametrize("start,end,reason", [(10.0, 8.0, "window_reversed"),
                                              (10.0, 30.0, "window_outside_video")])
def test_bad_intervals_are_reasons(start, end, reason):
  cap = im.Caption(1, "v", "a cat is sleeping", start, end, "x:1")
  with pytest.raises(im.SkipCaption) as e:
    im.label_caption(cap, clips_with_cosines(COS), np.array([1.0, 0.0]), cfg())
  assert e.value.reason == reason and "x:1" in str(e.value)


def test_internvid_fields_and_timestamps():
  cap = im.parse_caption({"YoutubeID": "y", "Start_timestamp": "00:01:02.500",
                          "End_timestamp": "01:00:00.000", "Caption": " a b c "}, 3, "f:4")
  assert (cap.ytid, cap.text, cap.start, cap.end) == ("y", "a b c", 62.5, 3600.0)
  assert im.parse_caption({"vid": "y", "start": 1, "end": 2.5, "caption": "x"}, 0, "f:1").end == 2.5
  with pytest.raises(im.SkipCaption, match="f:2"):
    im.parse_caption({"vid": "y", "start": "soon", "end": 2, "caption": "x"}, 0, "f:2")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("intervid_raw"))
  synthetic.generate_intervid(out, num_captions=60, seed=3, video_dim=VIDEO_DIM,
                              text_dim=TEXT_DIM)
  return out


def label(raw, out, **kw):
  return im.run(cfg(), os.path.join(raw, "captions.jsonl"), os.path.join(raw, "video_features"),
                os.path.join(raw, "caption_features"), out, **kw)


def read_examples(out):
  from sg_detr_jax.data.tfds_source import open_split
  source, meta = open_split(os.path.join(out, "tfds"), "intervid_mr", "train")
  examples = sorted((source[i] for i in range(len(source))), key=lambda e: int(e["qid"]))
  return examples, meta


def assert_same_dataset(a, b):
  with open(os.path.join(a, "annotations", "train.jsonl")) as f1, \
       open(os.path.join(b, "annotations", "train.jsonl")) as f2:
    assert f1.read() == f2.read()
  (ea, _), (eb, _) = read_examples(a), read_examples(b)
  assert len(ea) == len(eb)
  for x, y in zip(ea, eb):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]), err_msg=k)


def test_local_run_accounts_for_every_caption(raw, tmp_path):
  out = str(tmp_path / "local")
  report = label(raw, out, workers=1)
  with open(os.path.join(raw, "captions.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  skipped = [json.loads(line) for line in open(os.path.join(out, "skipped.jsonl"))]
  anns = read_annotations(os.path.join(out, "annotations", "train.jsonl"), get_spec("intervid_mr"))
  assert report["written"] == len(anns) > 0 and report["written"] + len(skipped) == len(lines)
  assert sorted([int(a.qid) for a in anns] + [s["qid"] for s in skipped]) == list(range(len(lines)))
  assert report["skipped_by_reason"] == dict(
      sorted(collections.Counter(s["reason"] for s in skipped).items()))
  # The generator plants meaningless captions and videos without features: both are reported.
  meaningless = {i for i, line in enumerate(lines)
                 if line["Caption"] in synthetic.MEANINGLESS_CAPTIONS}
  assert meaningless and meaningless <= {s["qid"] for s in skipped if s["reason"].startswith("filter")}
  missing = {i for i, line in enumerate(lines) if i not in meaningless and not os.path.exists(
      os.path.join(raw, "video_features", line["YoutubeID"] + ".npz"))}
  assert missing == {s["qid"] for s in skipped if s["reason"] == "missing_features"}
  # Every example: segment features are the source video's rows, normalised; labels match the jsonl.
  examples, meta = read_examples(out)
  assert meta["dataset"] == "intervid_mr" and meta["labelling"]["threshold_rule"] == "mean_std"
  by_qid = {int(a.qid): a for a in anns}
  for ex in examples[:10]:
    ann = by_qid[int(ex["qid"])]
    rec = lines[int(ex["qid"])]
    src = np.load(os.path.join(raw, "video_features", rec["YoutubeID"] + ".npz"))["features"]
    start = float(ann.vid.rsplit("_", 2)[1])
    c0 = int(round(start / 2))
    seg = src[c0:c0 + ex["video_features"].shape[0]].astype(np.float32)
    np.testing.assert_allclose(ex["video_features"],
                               seg / (np.linalg.norm(seg, axis=1, keepdims=True) + 1e-5), atol=1e-6)
    np.testing.assert_array_equal(np.flatnonzero(ex["relevant"]), ann.relevant_clip_ids)


def test_process_pool_gives_the_same_dataset(raw, tmp_path):
  label(raw, str(tmp_path / "one"), workers=1)
  label(raw, str(tmp_path / "pool"), workers=2)
  assert_same_dataset(str(tmp_path / "one"), str(tmp_path / "pool"))


def test_beam_direct_runner_gives_the_same_dataset(raw, tmp_path):
  pytest.importorskip("apache_beam", reason="apache-beam is the optional `beam` extra")
  label(raw, str(tmp_path / "one"), workers=1)
  report = label(raw, str(tmp_path / "beam"), runner="beam", beam_options="runner=DirectRunner")
  assert report["written"] > 0
  assert_same_dataset(str(tmp_path / "one"), str(tmp_path / "beam"))


def test_existing_output_needs_overwrite(raw, tmp_path):
  out = str(tmp_path / "x")
  label(raw, out)
  with pytest.raises(FileExistsError, match="overwrite"):
    label(raw, out)
  assert label(raw, out, overwrite=True)["written"] > 0


def test_pretrain_zero_shot_then_finetune_init(raw, synthetic_tfds, tmp_path):
  """The workflow on the tiny config: pre-train on the pseudo-labels with zero-shot evaluation on
  the QVHighlights-format val, then a fine-tuning run starts from those parameters."""
  import jax
  from conftest import tiny_train_config
  from sg_detr_jax.training import loop
  from sg_detr_jax.training.checkpoints import load_params

  out = str(tmp_path / "labelled")
  label(raw, out)
  pre = tiny_train_config(synthetic_tfds)
  pre.data.dataset = "intervid_mr"
  pre.data.data_dir = os.path.join(out, "tfds")
  pre.data.eval_dataset = "qvhighlights"
  pre.data.eval_data_dir = synthetic_tfds["data_dir"]
  pre.train.num_epochs = 1
  workdir = str(tmp_path / "pretrain")
  metrics = loop.train_and_evaluate(pre, workdir, progress=False)
  assert np.isfinite(metrics["brief"]["MR-full-mAP"])
  logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r for r in logged if r["split"] == "eval"][-1]["MR-full-mAP"] == \
      pytest.approx(metrics["brief"]["MR-full-mAP"])
  # Zero-shot predictions (launch.evaluate) cover exactly the QVHighlights-format val queries.
  from launch import evaluate
  evaluate.run(pre, workdir, "best", "val", quiet=True)
  preds = [json.loads(line) for line in open(os.path.join(workdir, "eval", "val_preds.jsonl"))]
  gt = [json.loads(line) for line in open(pre.data.gt_files.val)]
  assert sorted(p["qid"] for p in preds) == sorted(g["qid"] for g in gt)

  ft = tiny_train_config(synthetic_tfds)
  ft.train.init_checkpoint = workdir
  graphdef, state, tx, _ = loop.build(ft, 10)
  started = loop._init_from(ft, graphdef, state, tx)  # pylint: disable=protected-access
  _, want = load_params(workdir, state["params"], "latest")  # the default
  for a, b in zip(jax.tree_util.tree_leaves(started["params"]), jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Only the parameters come from the pre-training run: the optimizer and step start afresh.
  assert int(started["step"]) == 0
