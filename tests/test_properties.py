"""Property-based tests (hypothesis): span geometry, the evaluation, NMS and weighted boxes fusion."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sg_detr_jax import spans
from sg_detr_jax.evaluation import evaluate
from sg_detr_jax.inference.postprocess import nms, weighted_boxes_fusion

SETTINGS = settings(max_examples=60, deadline=None)
coord = st.floats(0.0, 150.0, allow_nan=False, width=32)


@st.composite
def interval(draw, min_len=0.5):
  a = draw(coord)
  length = draw(st.floats(min_len, 150.0, width=32))
  return (a, a + length)


@st.composite
def windows(draw, max_size=12):
  n = draw(st.integers(0, max_size))
  out = []
  for _ in range(n):
    s, e = draw(interval())
    out.append((s, e, draw(st.floats(0.01, 1.0))))
  return np.asarray(out, np.float64).reshape(-1, 3)


@SETTINGS
@given(interval(), interval())
def test_iou_giou_bounds_and_symmetry(a, b):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  iou_ab, giou_ab = (float(x) for x in spans.iou_and_giou(a, b))
  iou_ba, giou_ba = (float(x) for x in spans.iou_and_giou(b, a))
  assert 0.0 <= iou_ab <= 1.0 + 1e-6 and -1.0 - 1e-6 <= giou_ab <= iou_ab + 1e-6
  assert iou_ab == pytest.approx(iou_ba, abs=1e-6) and giou_ab == pytest.approx(giou_ba, abs=1e-6)
  self_iou, self_giou = (float(x) for x in spans.iou_and_giou(a, a))
  assert self_iou == pytest.approx(1.0, abs=1e-5) and self_giou == pytest.approx(1.0, abs=1e-5)


@SETTINGS
@given(interval(min_len=0.0))
def test_span_encoding_round_trip(a):
  x = np.asarray(a, np.float64)
  back = np.asarray(spans.cxw_to_xx(spans.xx_to_cxw(x)))
  np.testing.assert_allclose(back, x, atol=1e-4)


@st.composite
def dataset(draw):
  """Ground truth (QVHighlights format) for a few queries and a prediction per query."""
  n = draw(st.integers(1, 6))
  gt, preds = [], []
  for q in range(n):
    duration = 150
    k = draw(st.integers(1, 3))
    starts = sorted(draw(st.lists(st.integers(0, 70), min_size=k, max_size=k, unique=True)))
    wins = [[2 * s, 2 * s + 2 * draw(st.integers(1, 4))] for s in starts]
    wins = [w for i, w in enumerate(wins) if i == 0 or w[0] >= wins[i - 1][1]]
    clip_ids = sorted({c for s, e in wins for c in range(s // 2, e // 2)})
    scores = [[draw(st.integers(0, 4)) for _ in range(3)] for _ in clip_ids]
    gt.append({"qid": q, "query": "q", "vid": f"v{q}", "duration": duration,
               "relevant_windows": wins, "relevant_clip_ids": clip_ids,
               "saliency_scores": scores})
    pw = [[float(s), float(s + length), draw(st.floats(0.01, 1.0))] for s, length in
          draw(st.lists(st.tuples(st.integers(0, 140), st.integers(1, 10)), min_size=1,
                        max_size=5))]
    sal = [float(draw(st.floats(0.0, 1.0))) for _ in range(75)]
    preds.append({"qid": q, "query": "q", "vid": f"v{q}", "pred_relevant_windows": pw,
                  "pred_saliency_scores": sal})
  return gt, preds


def perfect(gt):
  """Predictions equal to the ground truth: every window with score 1, saliency = summed grades."""
  out = []
  for g in gt:
    sal = np.zeros(75)
    for c, s in zip(g["relevant_clip_ids"], g["saliency_scores"]):
      sal[c] = sum(s) + 1
    out.append({"qid": g["qid"], "query": g["query"], "vid": g["vid"],
                "pred_relevant_windows": [[s, e, 1.0] for s, e in g["relevant_windows"]],
                "pred_saliency_scores": sal.tolist()})
  return out


@settings(max_examples=25, deadline=None)
@given(dataset(), st.randoms(use_true_random=False))
def test_evaluation_is_invariant_to_query_order(data, rnd):
  gt, preds = data
  ref = evaluate(preds, gt, task="qvhighlights")["brief"]
  order = list(range(len(preds)))
  rnd.shuffle(order)
  shuffled = evaluate([preds[i] for i in order], list(reversed(gt)), task="qvhighlights")["brief"]
  assert shuffled == ref


@settings(max_examples=25, deadline=None)
@given(dataset())
def test_perfect_predictions_score_100(data):
  gt, _ = data
  brief = evaluate(perfect(gt), gt, task="qvhighlights")["brief"]
  for key in ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP@0.5"):
    assert brief[key] == pytest.approx(100.0), key


@SETTINGS
@given(windows(), st.floats(0.1, 0.9), st.integers(1, 10))
def test_nms_outputs_a_subset_in_score_order(w, thr, k):
  out = nms(w, thr, k)
  assert len(out) <= min(len(w), k)
  for row in out:  # every output is one of the inputs
    assert np.any(np.all(np.isclose(w, row), axis=1))
  assert np.all(np.diff(out[:, 2]) <= 0)
  for i in range(len(out)):  # kept windows overlap each other at most `thr`
    for j in range(i + 1, len(out)):
      inter = max(0.0, min(out[i, 1], out[j, 1]) - max(out[i, 0], out[j, 0]))
      union = (out[i, 1] - out[i, 0]) + (out[j, 1] - out[j, 0]) - inter
      assert inter / union <= thr + 1e-9


@SETTINGS
@given(windows(), windows(), st.floats(0.3, 0.9))
def test_wbf_stays_inside_the_inputs_hull_and_never_adds_boxes(a, b, thr):
  span = 160.0
  out = weighted_boxes_fusion([a, b], [1.0, 1.0], span, thr, skip=0.0)
  inputs = np.concatenate([a, b])
  assert len(out) <= len(inputs)
  if len(out):
    lo, hi = inputs[:, 0].min(), np.minimum(inputs[:, 1], span).max()
    assert np.all(out[:, 0] >= lo - 1e-6) and np.all(out[:, 1] <= hi + 1e-6)
    assert np.all(out[:, 1] >= out[:, 0])
    assert np.all(out[:, 2] <= inputs[:, 2].max() + 1e-9) and np.all(out[:, 2] > 0)
