"""Post-processing against the official PyTorch post-processor (shared/reference/official_golden).

The raw head outputs of forward.npz (the official model's, not ours) go through the same entry
points as prediction writing (`batch_windows`, `records_for_batch`); the official convention must
give the official lists: final DETR / ATSS / fused lists and saliency exactly (order included;
rows with tied scores compared as a set, as the golden README asks), the intermediate lists at
1e-4 s.
"""

import dataclasses
import os

import ml_collections
import numpy as np
import pytest

from configs import qvhighlights
from sg_detr_jax.inference import postprocess
from sg_detr_jax.inference.predict import records_for_batch
from sg_detr_jax.models.outputs import Predictions
from sg_detr_jax.porting.official_names import head_outputs
from tests.conftest import SHARED

GOLDEN = os.path.join(SHARED, "reference", "official_golden")
B = 4
LEVELS = 4


@pytest.fixture(scope="module")
def golden():
  if not os.path.isdir(GOLDEN):
    pytest.skip(f"{GOLDEN} is missing")
  f = np.load(os.path.join(GOLDEN, "forward.npz"))
  inputs = np.load(os.path.join(GOLDEN, "inputs.npz"))
  # our model's output layout (models/sg_detr.py), from the official raw outputs
  # The batch's padded grid (model.atss_anchor_grid = "batch"): sample 0 has 76 valid rows, so
  # every anchor of the 76-row tensor, for every sample (anchors past a sample's length included).
  out = head_outputs(f, LEVELS)
  out = out.replace(anchor_mask=np.ones(out.atss_logits.shape, bool))
  valid = inputs["src_vid_mask"].sum(1).astype(int)
  post = {k[len("post/"):]: f[k] for k in f.files if k.startswith("post/")}
  return {"out": out, "post": post, "duration": f["meta/duration"],
          "num_real": inputs["num_real_clips"], "num_valid": valid,
          "video_mask": inputs["src_vid_mask"] > 0}


def _pp(**overrides):
  pp = qvhighlights.get_config().postprocess
  for k, v in overrides.items():
    pp[k] = v
  return pp


def _tie_canonical(rows: np.ndarray, key: np.ndarray) -> np.ndarray:
  """Rows with equal consecutive `key` values sorted among themselves (order otherwise kept)."""
  rows = np.array(rows, copy=True)
  start = 0
  for end in range(1, len(rows) + 1):
    if end == len(rows) or key[end] != key[start]:
      block = rows[start:end]
      rows[start:end] = block[np.lexsort(block.T[::-1])]
      start = end
  return rows


def _assert_exact(ours, gold, key, what):
  ours = np.asarray(ours, np.float64)
  gold = np.asarray(gold, np.float64)
  assert ours.shape == gold.shape, f"{what}: {ours.shape} vs {gold.shape}"
  np.testing.assert_array_equal(_tie_canonical(ours, key), _tie_canonical(gold, key), err_msg=what)


def _official(golden, **kw):
  d = golden["duration"]
  return postprocess.batch_windows(golden["out"], np.arange(B), d, 2.0, d, _pp(), **kw)


def test_official_config_is_the_official_default_yaml():
  pp = _pp()
  assert pp.convention == "official"
  assert (pp.detr_score, pp.detr_nms_iou, pp.wbf_score) == ("combo", None, "combo")
  assert (pp.aux_pre_threshold, pp.aux_nms_iou, pp.aux_top_k) == (0.05, 0.5, 10)
  assert (pp.atss_pre_threshold, pp.atss_nms_iou, pp.atss_top_k) == (0.01, 0.75, 10)
  assert (tuple(pp.wbf_weights), pp.wbf_iou, pp.wbf_skip, pp.wbf_span_seconds) == \
      ((1.0, 2.5), 0.8, 0.1, 152.0)
  assert (pp.round_seconds, pp.clamp_min, pp.clamp_max, pp.min_window, pp.max_window,
          pp.move_window, pp.score_decimals) == (2.0, 0.0, 150.0, 2.0, 150.0, "center", 4)


def test_official_final_lists_are_the_official_ones(golden):
  post = golden["post"]
  for b, res in enumerate(_official(golden, with_raw=True)):
    prob = post[f"detr_raw_b{b}"][:, 2]
    _assert_exact(res["detr"], post[f"final_detr_b{b}"], prob, f"final_detr_b{b}")
    atss_key = post[f"atss_raw_b{b}"][:, 2]
    _assert_exact(res["atss"], post[f"final_atss_b{b}"], atss_key, f"final_atss_b{b}")
    wbf_key = post[f"wbf_raw_b{b}"][:, 2]
    _assert_exact(res["fused"], post[f"final_wbf_b{b}"], wbf_key, f"final_wbf_b{b}")
    # The DETR rows keep the class-probability order: their scores are not sorted.
    assert np.all(np.diff(prob) <= 0)
  assert any(np.any(np.diff(post[f"final_detr_b{b}"][:, 2]) > 0) for b in range(B))


def test_official_intermediate_lists_within_1e4(golden):
  post = golden["post"]
  for b, res in enumerate(_official(golden, with_raw=True)):
    for name in ("detr_raw", "atss_raw", "atss_comb_raw", "wbf_raw"):
      ours, gold = res[name], post[f"{name}_b{b}"]
      assert ours.shape == gold.shape, (name, b, ours.shape, gold.shape)
      np.testing.assert_allclose(ours, gold, rtol=0, atol=1e-4, err_msg=f"{name}_b{b}")
  # Anchors past a sample's valid length survive (sample 2 keeps the zero-length [144, 144]),
  # and the fusion skips the zero-length window.
  comb = _official(golden, with_raw=True)[2]["atss_comb_raw"]
  assert np.any((comb[:, 0] == 144) & (comb[:, 1] == 144))


def test_anchors_outside_the_batch_grid_are_not_candidates(golden):
  """Our static padding can be longer than the official batch's padded grid: anchors that the
  model's anchor_mask puts outside the grid (confident ones here) must not change the lists."""
  out = dataclasses.asdict(golden["out"])
  extra = 6
  out["anchors"] = np.concatenate([out["anchors"], np.tile([[150.0, 154.0]], (extra, 1))])
  for k, fill in (("atss_logits", 9.0), ("atss_ctr", 9.0)):
    out[k] = np.concatenate([out[k], np.full((B, extra), fill, np.float32)], axis=1)
  out["atss_deltas"] = np.concatenate([out["atss_deltas"], np.zeros((B, extra, 2), np.float32)], 1)
  out["anchor_mask"] = np.concatenate([out["anchor_mask"], np.zeros((B, extra), bool)], axis=1)
  out = Predictions(**out)
  d = golden["duration"]
  got = postprocess.batch_windows(out, np.arange(B), d, 2.0, d, _pp(), with_raw=True)
  for b, ref in enumerate(_official(golden, with_raw=True)):
    for k in ("atss_comb_raw", "fused"):
      np.testing.assert_array_equal(got[b][k], ref[k])
  out.anchor_mask[:] = True  # inside the grid, they would be the best candidates
  inside = postprocess.batch_windows(out, [0], d[0], 2.0, d[0], _pp(), with_raw=True)[0]
  assert np.sum(inside["atss_comb_raw"][:, 2] > 0.99) == extra


def test_official_saliency_through_float16(golden):
  sal = postprocess.saliency_scores(golden["out"], np.arange(B), golden["num_real"],
                                    golden["num_valid"], _pp())
  for b in range(B):
    np.testing.assert_array_equal(sal[b], golden["post"][f"saliency_b{b}"])


def test_written_records_are_the_official_lists(golden):
  """records_for_batch (what launch.evaluate writes) from the same outputs, a padded batch."""
  # One padding row appended (batch_mask False), as eval batches have.
  out = dataclasses.asdict(golden["out"])
  for k in ("atss_logits", "atss_ctr", "atss_deltas", "anchor_mask", "saliency_global"):
    out[k] = np.concatenate([out[k], out[k][:1]])
  for k in ("pred_spans", "pred_logits", "pred_iou"):  # [N, B, ...]
    out[k] = np.concatenate([out[k], out[k][:, :1]], axis=1)
  out = Predictions(**out)
  d = golden["duration"]
  batch = {
      "batch_mask": np.array([True] * B + [False]),
      "span_seconds": np.r_[d, d[:1]].astype(np.float32),
      "clip_len": np.full(B + 1, 2.0, np.float32),
      "duration": np.r_[d, d[:1]].astype(np.float32),  # the official meta duration
      "num_clips": np.r_[golden["num_real"], golden["num_real"][:1]].astype(np.int32),
      "video_mask": np.concatenate([golden["video_mask"], golden["video_mask"][:1]]),
      "meta": {"qid": np.array([str(i) for i in range(B + 1)], object),
               "vid": np.array(["v"] * (B + 1), object),
               "query": np.array(["q"] * (B + 1), object)},
  }
  recs = records_for_batch(out, batch, _pp(), "int", with_saliency=True)
  post = golden["post"]
  assert [r["qid"] for r in recs["detr"]] == list(range(B))
  for b in range(B):
    _assert_exact(recs["detr"][b]["pred_relevant_windows"], post[f"final_detr_b{b}"],
                  post[f"detr_raw_b{b}"][:, 2], f"written detr {b}")
    _assert_exact(recs["fused"][b]["pred_relevant_windows"], post[f"final_wbf_b{b}"],
                  post[f"wbf_raw_b{b}"][:, 2], f"written fused {b}")
    for head in ("detr", "fused"):
      np.testing.assert_array_equal(recs[head][b]["pred_saliency_scores"],
                                    post[f"saliency_b{b}"])


def test_batched_equals_one_sample_at_a_time(golden):
  d = golden["duration"]
  batched = _official(golden, with_raw=True)
  for b in range(B):
    one = postprocess.batch_windows(golden["out"], [b], d[b], 2.0, d[b], _pp(), with_raw=True)[0]
    single = postprocess.sample_windows(golden["out"], b, d[b], 2.0, d[b], _pp())
    for k, v in one.items():
      np.testing.assert_array_equal(v, batched[b][k], err_msg=k)
    for k in ("detr", "fused"):
      np.testing.assert_array_equal(single[k], batched[b][k])


def test_ranked_convention_sorts_by_confidence(golden):
  d = golden["duration"]
  out = golden["out"]
  ranked = postprocess.batch_windows(out, np.arange(B), d, 2.0, d - 4.0, _pp(convention="ranked"))
  for b, res in enumerate(ranked):
    for head in ("detr", "fused"):
      w = res[head]
      assert np.all(np.diff(w[:, 2]) <= 0), head  # best first
      assert np.all(w[:, 0] >= 0) and np.all(w[:, 1] <= d[b] - 4.0)  # clamped to the duration
    p = 1 / (1 + np.exp(-out.pred_logits[-1, b].astype(np.float64)))
    u = 1 / (1 + np.exp(-out.pred_iou[-1, b].astype(np.float64)))
    np.testing.assert_allclose(res["detr"][:, 2], np.sort(np.sqrt(p * u))[::-1], rtol=1e-12)
  sal = postprocess.saliency_scores(out, np.arange(B), golden["num_real"], golden["num_valid"],
                                    _pp(convention="ranked"))
  for b in range(B):  # the real clips, unrounded
    np.testing.assert_array_equal(sal[b], out.saliency_global[b, :golden["num_real"][b]])


def test_official_clean_up_by_hand():
  pp = ml_collections.ConfigDict(dict(clamp_min=0.0, clamp_max=150.0, round_seconds=2.0,
                                      min_window=2.0, max_window=150.0, move_window="center"))
  w = np.array([[-3.0, 5.1], [7.2, 7.4], [149.0, 160.0], [151.0, 153.0], [3.0, 5.0]], np.float32)
  got = postprocess.official_clean(w, pp)
  # clamp to [0, 150]; round half to even ([3, 5] -> [4, 4], half-up would give [4, 6]); widen
  # windows shorter than 2 s about their centre; no clamp afterwards ([150, 150] -> [149, 151])
  np.testing.assert_array_equal(got, [[0, 6], [7, 9], [148, 150], [149, 151], [3, 5]])
  assert got.dtype == np.float32
  pp.move_window = "left"
  np.testing.assert_array_equal(postprocess.official_clean(w[1:2], pp), [[8, 10]])


def test_nms_keeps_ties_at_the_top_k_score():
  rows = np.array([[0, 10, 0.9], [20, 30, 0.5], [40, 50, 0.5], [1, 10, 0.8]], np.float32)
  kept = postprocess.nms(rows, 0.5, top_k=2, keep_ties=True)  # [1, 10] suppressed (IoU 0.9)
  np.testing.assert_array_equal(kept, rows[[0, 1, 2]])  # the two tied at the 2nd score stay
  zero = np.array([[5, 5, 0.9], [5, 5, 0.8]], np.float32)  # 0/0 IoU never suppresses
  assert len(postprocess.nms(zero, 0.5, top_k=10, keep_ties=True)) == 2


def test_missing_convention_is_an_error():
  pp = ml_collections.ConfigDict({"atss_pre_threshold": 0.01})
  with pytest.raises(KeyError, match="convention"):
    postprocess.sample_windows({}, 0, 1.0, 2.0, 1.0, pp)
