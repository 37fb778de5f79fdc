"""The inference API (Predictor), the npz prediction CLI, the figures, and the non-finite-loss stop.

All on the tiny config trained for two epochs (the `trained` fixture of tests/conftest.py)."""

import os
import shutil

import numpy as np
import pytest

from sg_detr_jax import jsonl
from sg_detr_jax.training.checkpoints import Checkpoints
from sg_detr_jax.training.loop import NonFiniteLossError, train_and_evaluate


@pytest.fixture(scope="module")
def evaluated(trained):
  from launch import evaluate
  c, workdir, _ = trained
  evaluate.run(c, workdir, "best", "val", quiet=True)
  preds = {p["qid"]: p for p in jsonl.read_jsonl(os.path.join(workdir, "eval", "val_preds.jsonl"))}
  gt = {g["qid"]: g for g in jsonl.read_jsonl(c.data.gt_files.val)}
  return c, workdir, preds, gt


def _raw_files(raw, g):
  return (os.path.join(raw, "video_features", f"{g['vid']}.npz"),
          os.path.join(raw, "text_features", f"qid{g['qid']}.npz"))


def test_predictor_on_raw_files_matches_launch_evaluate(evaluated, synthetic_tfds):
  """Raw (unnormalised) release files through the Predictor == the TFDS evaluation path."""
  from sg_detr_jax import Predictor
  c, workdir, preds, gt = evaluated
  predictor = Predictor.from_workdir(workdir)
  qids = sorted(gt)[:5]
  pairs, durations = [], []
  for q in qids:
    vpath, tpath = _raw_files(synthetic_tfds["raw"], gt[q])
    pairs.append((np.load(vpath)["features"], np.load(tpath)["last_hidden_state"]))
    durations.append(gt[q]["duration"])
  results = predictor.predict_many(pairs, durations)
  single = predictor.predict(*pairs[0], duration=durations[0])  # batch of 1: another shape
  for q, r in zip(qids, results):
    ref = preds[q]
    # the submission writer stores saliency through float16, like the official writers
    np.testing.assert_allclose(r.saliency, ref["pred_saliency_scores"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(r.windows, ref["pred_relevant_windows"], atol=2e-4)
    # official convention: bounded by the feature length (valid rows) and clamp_max, not by the
    # annotated duration; widened windows may pass that by half the minimum window; an empty
    # fused list is one [0, 0, 0] row
    pp = c.postprocess
    bound = min(len(r.saliency) * predictor.clip_len, pp.clamp_max) + pp.min_window / 2
    assert np.all((r.windows[:, 0] < r.windows[:, 1]) | np.all(r.windows == 0, axis=1))
    assert r.windows[:, 1].max() <= bound
  np.testing.assert_allclose(single.windows, results[0].windows, atol=1e-5)
  np.testing.assert_allclose(single.saliency, results[0].saliency, atol=1e-5)


def test_predictor_rejects_bad_features(evaluated):
  from sg_detr_jax import Predictor
  _, workdir, _, _ = evaluated
  predictor = Predictor.from_workdir(workdir)
  video, text = np.ones((10, 32), np.float32), np.ones((5, 24), np.float32)
  with pytest.raises(ValueError, match="expects"):
    predictor.predict(np.ones((10, 31), np.float32), text)
  with pytest.raises(ValueError, match="empty"):
    predictor.predict(video, np.ones((0, 24), np.float32))
  bad = video.copy()
  bad[3, 4] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    predictor.predict(bad, text)


def test_predict_cli_and_figures(evaluated, synthetic_tfds, tmp_path):
  from launch import predict, visualize
  c, workdir, preds, gt = evaluated
  q = sorted(gt)[1]
  vpath, tpath = _raw_files(synthetic_tfds["raw"], gt[q])
  out = str(tmp_path / "p.jsonl")
  assert predict.main(["--workdir", workdir, "--video", vpath, "--text", tpath,
                       "--duration", str(gt[q]["duration"]), "--out", out]) == 0
  (row,) = jsonl.read_jsonl(out)
  np.testing.assert_allclose(row["pred_relevant_windows"], preds[q]["pred_relevant_windows"],
                             atol=2e-4)
  np.testing.assert_allclose(row["pred_saliency_scores"], preds[q]["pred_saliency_scores"],
                             rtol=1e-3, atol=1e-3)  # float16 in the submission file
  with pytest.raises(SystemExit):  # unpaired arguments
    predict.main(["--workdir", workdir, "--video", vpath, "--video", vpath, "--text", tpath])

  assert visualize.main(["--workdir", workdir, "--qids", str(q), "--gt", c.data.gt_files.val,
                         "--out", str(tmp_path / "fig")]) == 0
  import matplotlib.image
  img = matplotlib.image.imread(str(tmp_path / "fig" / f"val_{q}.png"))
  assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
  assert img[..., :3].std() > 0.05  # something was drawn
  with pytest.raises(SystemExit, match="not in"):
    visualize.main(["--workdir", workdir, "--qids", "987654321"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(trained, tmp_path, monkeypatch):
  """A forward that diverges (here: every batch turned to NaN after the input checks, so the
  compiled step is `trained`'s own) stops training with the terms named; nothing is written
  after the last good step."""
  from sg_detr_jax.training import loop
  c, workdir, _ = trained
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  more = c.copy_and_resolve_references()
  more.train.num_epochs = 3  # resumes after the 2 trained epochs
  arrays = loop.device_arrays
  diverged = lambda batch: {k: (np.full_like(v, np.nan) if k == "video" else v)  # noqa: E731
                            for k, v in arrays(batch).items()}
  monkeypatch.setattr(loop, "device_arrays", diverged)
  before = Checkpoints(copy).steps()
  with pytest.raises(NonFiniteLossError, match=r"not finite.*loss.*last good checkpoint"):
    train_and_evaluate(more, copy, progress=False)
  ckpts = Checkpoints(copy)
  assert ckpts.steps() == before and ckpts.latest() == 24  # nothing written after the bad steps
  assert ckpts.best() in before  # the validation scores are still there


def test_split_predictions_same_with_and_without_lookahead(evaluated):
  """launch.evaluate post-processes each batch while the next one runs (train.eval_batches_ahead
  1); strictly in turn (0), every record of the split is the same, in the same order."""
  from sg_detr_jax.inference.predict import predict_split
  from sg_detr_jax.training import steps as steps_lib
  from sg_detr_jax.inference.predictor import restore_workdir
  c, workdir, preds, _ = evaluated
  assert c.train.eval_batches_ahead == 1
  config, params = restore_workdir(workdir, "best")
  assert len(preds) > 2 * config.train.eval_batch_size  # several batches in flight
  with config.unlocked():
    config.train.eval_batches_ahead = 0
  records, _ = predict_split(steps_lib.make_predict_step(config), params, config, "val")
  written = jsonl.read_jsonl(os.path.join(workdir, "eval", "val_preds.jsonl"))
  assert [r["qid"] for r in records["fused"]] == [r["qid"] for r in written]
  for r, w in zip(records["fused"], written):
    np.testing.assert_array_equal(r["pred_relevant_windows"], w["pred_relevant_windows"])
    np.testing.assert_array_equal(r["pred_saliency_scores"], w["pred_saliency_scores"])
