"""The batched evaluator equals the official per-query loops bit for bit, including ties and edges.

`_official_*` below transcribe the official Moment-DETR `standalone_eval` functions (one query at a
time, Python loops, `np.sum` / `np.mean` on small 1-D arrays, scikit-learn's precision-recall curve
re-stated) so that random inputs full of ties can be compared without rounding.
"""

import json

import numpy as np
import pytest

from sg_detr_jax.evaluation import evaluate
from sg_detr_jax.evaluation.highlight import batched_binary_ap, binary_ap
from sg_detr_jax.evaluation.moment_retrieval import MAP_IOU_THRESHOLDS, average_precision_per_threshold
from sg_detr_jax.evaluation.reductions import pairwise_sum_rows


# ---- Official per-query functions (Moment-DETR standalone_eval, transcribed) ----

def _official_interpolated_precision_recall(precision, recall):
  mprecision = np.hstack([[0], precision, [0]])
  mrecall = np.hstack([[0], recall, [1]])
  for i in range(len(mprecision) - 1)[::-1]:
    mprecision[i] = max(mprecision[i], mprecision[i + 1])
  idx = np.where(mrecall[1::] != mrecall[0:-1])[0] + 1
  return np.sum((mrecall[idx] - mrecall[idx - 1]) * mprecision[idx])


def _official_cross_iou(spans1, spans2):
  areas1 = spans1[:, 1] - spans1[:, 0]
  areas2 = spans2[:, 1] - spans2[:, 0]
  left = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
  right = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
  inter = np.clip(right - left, 0, None)
  union = areas1[:, None] + areas2[None, :] - inter
  return inter / union


def _official_ap_detection(gt_windows, pred_windows, thresholds):
  """compute_average_precision_detection for one query; preds are (start, end, score)."""
  num_t, num_gts, num_preds = len(thresholds), len(gt_windows), len(pred_windows)
  ap = np.zeros(num_t)
  if num_preds == 0:
    return ap
  lock_gt = np.ones((num_t, num_gts)) * -1
  prediction = sorted(pred_windows, key=lambda x: -x[2])
  tp = np.zeros((num_t, num_preds))
  fp = np.zeros((num_t, num_preds))
  _gt = np.array([[s, e] for s, e in gt_windows], dtype=float)
  for idx, pred in enumerate(prediction):
    tiou_arr = _official_cross_iou(np.array([[pred[0], pred[1]]], dtype=float), _gt).reshape(-1)
    tiou_sorted_idx = tiou_arr.argsort(kind="stable")[::-1]  # the documented tie rule
    for t_idx, thr in enumerate(thresholds):
      for j_idx in tiou_sorted_idx:
        if tiou_arr[j_idx] < thr:
          fp[t_idx, idx] = 1
          break
        if lock_gt[t_idx, j_idx] >= 0:
          continue
        tp[t_idx, idx] = 1
        lock_gt[t_idx, j_idx] = idx
        break
      if fp[t_idx, idx] == 0 and tp[t_idx, idx] == 0:
        fp[t_idx, idx] = 1
  tp_cumsum = np.cumsum(tp, axis=1).astype(float)
  fp_cumsum = np.cumsum(fp, axis=1).astype(float)
  recall_cumsum = tp_cumsum / float(num_gts)
  precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
  for t_idx in range(num_t):
    ap[t_idx] = _official_interpolated_precision_recall(precision_cumsum[t_idx, :],
                                                        recall_cumsum[t_idx, :])
  return ap


def _official_precision_recall_curve(y_true, y_score):
  """scikit-learn's precision_recall_curve (binary, no weights, full curve)."""
  desc = np.argsort(y_score, kind="mergesort")[::-1]
  y_score, y_true = y_score[desc], y_true[desc]
  distinct = np.where(np.diff(y_score))[0]
  threshold_idxs = np.r_[distinct, y_true.size - 1]
  tps = np.cumsum(y_true == 1, dtype=np.float64)[threshold_idxs]
  fps = 1 + threshold_idxs - tps
  ps = tps + fps
  precision = np.zeros_like(tps)
  np.divide(tps, ps, out=precision, where=(ps != 0))
  recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
  return np.hstack((precision[::-1], 1)), np.hstack((recall[::-1], 0))


def _official_get_ap(y_true, y_predict):
  if len(set(y_true)) == 1:
    return 0 if y_true[0] == 0 else 1
  precision, recall = _official_precision_recall_curve(y_true, y_predict)
  recall = recall.astype(np.float32)
  for i in range(1, len(precision)):
    precision[i] = max(precision[i - 1], precision[i])
  return np.mean(precision[np.where(np.diff(recall))])


def _official_mr_and_hl(submission, ground_truth):
  """Unrounded full-range mAP per threshold, R1 IoUs and HL-mAP / Hit1 (all 3 thresholds)."""
  gt = {d["qid"]: d for d in ground_truth}
  ap_array = np.array([
      _official_ap_detection(gt[d["qid"]]["relevant_windows"], d["pred_relevant_windows"][:10],
                             MAP_IOU_THRESHOLDS) for d in submission])
  top1 = {d["qid"]: d["pred_relevant_windows"][0][:2] for d in submission}
  chosen = {}
  for d in ground_truth:
    ious = _official_cross_iou(np.array([top1[d["qid"]]], float), np.array(d["relevant_windows"],
                                                                           float))[0]
    chosen[d["qid"]] = d["relevant_windows"][int(np.argmax(ious))]
  hl = {}
  for thr in (2, 3, 4):
    aps, hits = np.zeros((len(submission), 3)), np.zeros((len(submission), 3))
    for i, d in enumerate(submission):
      g = gt[d["qid"]]
      scores = np.zeros((int(g["duration"] / 2), 3))
      scores[np.array(g["relevant_clip_ids"])] = np.array(g["saliency_scores"])
      binary = (scores >= thr).astype(float)
      pred = np.array(d["pred_saliency_scores"])
      top = np.argmax(d["pred_saliency_scores"])
      if top < len(binary):
        hits[i] = binary[top]
      if len(binary) < len(pred):
        pred = pred[:len(binary)]
      elif len(binary) > len(pred):
        padded = np.zeros(len(binary))
        padded[:len(pred)] = pred
        pred = padded
      for k in range(3):
        aps[i, k] = _official_get_ap(binary[:, k], pred)
    hl[thr] = (np.mean(aps), np.mean(np.max(hits, 1)))
  return ap_array.mean(0), top1, chosen, hl


def _random_data(rng, num_queries, grid):
  """Windows on a coarse grid and scores from a few values: exact IoU and score ties everywhere."""
  gt, sub = [], []
  for q in range(num_queries):
    duration = int(rng.choice([6, 20, 40, 76, 150]))
    num_clips = duration // 2
    num_gt = int(rng.integers(1, 14)) if q % 3 == 0 else int(rng.integers(1, 4))
    windows = []
    for _ in range(num_gt):
      s = float(rng.integers(0, duration // grid)) * grid
      windows.append([s, min(float(duration), s + grid * float(rng.integers(1, 6)))])
    ids = sorted(rng.choice(num_clips, size=int(rng.integers(1, num_clips + 1)), replace=False))
    gt.append({"qid": q, "duration": duration, "relevant_windows": windows,
               "relevant_clip_ids": [int(i) for i in ids],
               "saliency_scores": rng.integers(0, 5, size=(len(ids), 3)).tolist()})
    preds = []
    for _ in range(int(rng.integers(1, 14))):
      if rng.random() < 0.6:  # near a GT window: many TPs, so the AP sums reach 8+ terms
        s, e = windows[int(rng.integers(len(windows)))]
        s, e = max(0.0, s - grid * float(rng.integers(0, 2))), e + grid * float(rng.integers(0, 2))
      else:
        s = float(rng.integers(0, duration // grid)) * grid
        e = s + grid * float(rng.integers(1, 8))
      preds.append([s, e, float(rng.choice([0.25, 0.5, 0.75, 0.9]))])
    saliency = rng.choice([0.0, 0.125, 0.5, 0.75], size=max(1, num_clips + int(rng.integers(-3, 4))))
    sub.append({"qid": q, "pred_relevant_windows": preds,
                "pred_saliency_scores": saliency.tolist()})
  rng.shuffle(sub)
  return sub, gt


# ---- Tests ----

@pytest.mark.parametrize("length", [1, 5, 7, 8, 9, 11, 16, 17, 75, 128, 129, 300])
def test_pairwise_sum_rows_is_numpy_sum_bit_for_bit(length):
  rng = np.random.default_rng(length)
  values = rng.random((500, length)) * rng.choice([1.0, 1e-9, 1e9], size=(500, length))
  mask = rng.random((500, length)) < rng.random((500, 1))
  sums, counts = pairwise_sum_rows(values, mask)
  expected = np.array([np.sum(values[r][mask[r]]) for r in range(500)])
  assert np.array_equal(sums, expected)
  assert np.array_equal(counts, mask.sum(1))


@pytest.mark.parametrize("seed", range(6))
def test_batched_metrics_equal_official_loops_bit_for_bit(seed):
  rng = np.random.default_rng(seed)
  sub, gt = _random_data(rng, 120, grid=float(rng.choice([1.0, 2.0])))
  gt_by_qid = {d["qid"]: d for d in gt}
  # Per query AP at every threshold: identical floats (1, 2 and up to 13 GT windows).
  for d in sub:
    preds = np.array(d["pred_relevant_windows"][:10])
    ours = average_precision_per_threshold(preds[:, :2], preds[:, 2],
                                           np.array(gt_by_qid[d["qid"]]["relevant_windows"]))
    ref = _official_ap_detection(gt_by_qid[d["qid"]]["relevant_windows"],
                                 d["pred_relevant_windows"][:10], MAP_IOU_THRESHOLDS)
    assert np.array_equal(ours, ref), d["qid"]
  # The whole evaluation: every rounded number equals the official means of the official values.
  official_map, top1, chosen, hl = _official_mr_and_hl(sub, gt)
  metrics = evaluate(sub, gt, task="qvhighlights", style="cg")
  for t, v in zip(MAP_IOU_THRESHOLDS, official_map):
    assert metrics["full"]["MR-mAP"][str(t)] == float(f"{100 * v:.2f}")
  assert metrics["full"]["MR-mAP"]["average"] == float(f"{100 * np.mean(official_map):.2f}")
  for thr, name in ((2, "Fair"), (3, "Good"), (4, "VeryGood")):
    assert metrics[f"HL-min-{name}"] == {"HL-mAP": float(f"{100 * hl[thr][0]:.2f}"),
                                         "HL-Hit1": float(f"{100 * hl[thr][1]:.2f}")}
  pred_w = np.array([top1[d["qid"]] for d in sub], float)
  gt_w = np.array([chosen[d["qid"]] for d in sub], float)
  inter = np.maximum(0, np.minimum(pred_w[:, 1], gt_w[:, 1]) - np.maximum(pred_w[:, 0], gt_w[:, 0]))
  hull = np.maximum(pred_w[:, 1], gt_w[:, 1]) - np.minimum(pred_w[:, 0], gt_w[:, 0])
  ious = np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)
  assert metrics["full"]["MR-mIoU"] == float(f"{np.mean(ious) * 100:.2f}")
  for t in (0.3, 0.5, 0.7, 0.95):
    assert metrics["full"]["MR-R1"][str(t)] == float(f"{np.mean(ious >= t) * 100:.2f}")


def test_batched_hd_ap_equals_official_get_ap_with_ties():
  rng = np.random.default_rng(7)
  num_q, length = 300, 40
  num_clips = rng.integers(1, length + 1, size=num_q)
  scores = rng.choice([0.0, 0.25, 0.5, 1.0], size=(num_q, length))  # many tied runs
  labels = rng.random((num_q, 4, length)) < rng.random((num_q, 4, 1))
  labels[:5] = True  # all-positive columns -> 1
  ap = batched_binary_ap(scores, num_clips, labels)
  for q in range(num_q):
    n = num_clips[q]
    for c in range(4):
      assert ap[q, c] == _official_get_ap(labels[q, c, :n].astype(float), scores[q, :n]), (q, c)


def test_hd_ap_single_run_of_equal_scores():
  # One tie run = one threshold: precision 2/3 at full recall -> AP 2/3.
  assert binary_ap(np.array([1, 0, 1.]), np.array([.5, .5, .5])) == 2 / 3


def test_exact_iou_tie_between_gt_windows_goes_to_the_higher_index():
  # [2.5, 12.5] has IoU 0.6 with both [0, 10] and [5, 15]; taking the later one ([5, 15]) leaves
  # [0, 10] free for the second prediction (2 TPs), taking the earlier one would not.
  preds = np.array([[2.5, 12.5], [0, 10]])
  scores = np.array([.9, .8])
  ap = average_precision_per_threshold(preds, scores, np.array([[0, 10], [5, 15.]]), (0.5,))
  assert ap[0] == 1.0
  ap = average_precision_per_threshold(preds, scores, np.array([[5, 15], [0, 10.]]), (0.5,))
  assert ap[0] == 0.5  # now [0, 10] is the later one and gets taken by the first prediction


def _tiny():
  gt = [{"qid": 1, "duration": 40, "relevant_windows": [[0, 20]], "relevant_clip_ids": [0],
         "saliency_scores": [[4, 4, 4]]}]
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 20, .9]], "pred_saliency_scores": [1.0, 0.0]}]
  return sub, gt


def test_empty_length_bucket():
  sub, gt = _tiny()  # only a 20 s window: "short" and "long" are empty
  m = evaluate(sub, gt, task="qvhighlights", style="cg")
  assert m["short"]["MR-mAP"]["average"] == 0.0 and "MR-mIoU" not in m["short"]
  assert m["middle"]["MR-mAP"]["average"] == 100.0
  with pytest.raises(ValueError, match="'short' has no ground-truth window"):
    evaluate(sub, gt, task="qvhighlights", style="md")  # the official MD script fails here too


def test_ground_truth_without_windows_names_the_qid():
  sub, gt = _tiny()
  gt = json.loads(json.dumps(gt))
  gt[0]["relevant_windows"] = []
  with pytest.raises(ValueError, match="qid 1 has no ground-truth window"):
    evaluate(sub, gt, task="qvhighlights")
