"""The evaluator reproduces the official QVHighlights metrics file exactly, and hand-worked cases."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sg_detr_jax import jsonl
from sg_detr_jax.evaluation import SubmissionError, evaluate
from sg_detr_jax.evaluation.highlight import binary_ap
from sg_detr_jax.evaluation.moment_retrieval import average_precision_per_threshold


def test_reproduces_official_metrics_file_exactly(qvh_reference):
  preds = jsonl.read_jsonl(qvh_reference["preds"])
  gt = jsonl.read_jsonl(qvh_reference["val"])
  with open(qvh_reference["metrics"]) as f:
    official = json.load(f)
  ours = evaluate(preds, gt, task="qvhighlights", style="md")
  # Same numbers, same key order, at every level (json round trip gives plain dicts).
  assert json.loads(json.dumps(ours)) == official
  assert list(ours) == list(official)
  assert list(ours["brief"]) == list(official["brief"])
  assert list(ours["full"]["MR-mAP"]) == list(official["full"]["MR-mAP"])


def test_cg_style_is_a_superset_with_equal_values(qvh_reference):
  preds = jsonl.read_jsonl(qvh_reference["preds"])
  gt = jsonl.read_jsonl(qvh_reference["val"])
  with open(qvh_reference["metrics"]) as f:
    official = json.load(f)
  ours = evaluate(preds, gt, task="qvhighlights", style="cg")
  for group, metrics in official.items():
    for key, value in metrics.items():
      if isinstance(value, dict):
        for k, v in value.items():
          assert ours[group][key][k] == v, (group, key, k)
      else:
        assert ours[group][key] == value, (group, key)
  # reference.md §4.8: CG numbers on the sample file.
  assert ours["brief"]["MR-full-R1@0.3"] == 67.48
  assert ours["brief"]["MR-full-mIoU"] == 49.21
  assert list(ours["full"])[0] == "MR-mIoU"


def test_cli_writes_metrics(qvh_reference, tmp_path):
  out = tmp_path / "m.json"
  subprocess.run([sys.executable, "-m", "sg_detr_jax.evaluation", "--pred", qvh_reference["preds"],
                  "--gt", qvh_reference["val"], "--out", str(out), "--style", "md"], check=True,
                 capture_output=True)
  with open(qvh_reference["metrics"]) as f:
    assert json.load(open(out)) == json.load(f)


# reference.md §4.9, worked out by hand there (and re-derived below).
GT = [
    {"qid": 1, "duration": 10, "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2],
     "saliency_scores": [[4, 2, 0], [3, 4, 1]]},
    {"qid": 2, "duration": 8, "relevant_windows": [[0, 2], [4, 8]], "relevant_clip_ids": [0, 2, 3],
     "saliency_scores": [[1, 1, 1], [4, 4, 4], [2, 3, 4]]},
]
SUB = [
    {"qid": 1, "pred_relevant_windows": [[2, 6, .9], [0, 10, .5]],
     "pred_saliency_scores": [.1, .5, .4, .2, 0]},
    {"qid": 2, "pred_relevant_windows": [[4, 6, .8], [0, 2, .6], [4, 8, .6]],
     "pred_saliency_scores": [.3, .1, .9]},
]


def test_hand_worked_example():
  m = evaluate(SUB, GT, task="qvhighlights", style="cg")
  full = m["full"]
  # q1: AP 1 everywhere. q2 @0.5: [4,6] vs [4,8] IoU 0.5 -> TP, [0,2] TP, [4,8] FP -> AP 1;
  # @>=0.55: FP, TP, TP -> precisions 1/2, 2/3 at recalls 1/2, 1 -> AP (0.5*2/3 + 0.5*2/3) = 2/3.
  assert full["MR-mAP"]["0.5"] == 100.0
  for t in ("0.55", "0.7", "0.95"):
    assert full["MR-mAP"][t] == 83.33
  assert full["MR-mAP"]["average"] == 85.0  # (100 + 9 * 83.333) / 10
  # Top-1 IoUs 1.0 and 0.5.
  assert full["MR-R1"]["0.5"] == 100.0 and full["MR-R1"]["0.7"] == 50.0
  assert full["MR-mIoU"] == 75.0
  # HD Fair (>=2): q1 columns [0,1,1,0,0] [0,1,1,0,0] [0,0,0,0,0] -> APs 1, 1, 0;
  # q2 (pred padded to [.3,.1,.9,0]) each column has AP 0.75 -> mean (2 + 2.25) / 6 = 70.83.
  assert m["HL-min-Fair"] == {"HL-mAP": 70.83, "HL-Hit1": 100.0}
  assert m["HL-min-Good"]["HL-mAP"] == 66.67
  assert m["HL-min-VeryGood"]["HL-mAP"] == 70.83


def test_ap_second_hand_case():
  ap = average_precision_per_threshold(
      np.array([[0, 10], [40, 50], [0, 8], [22, 30]], float), np.array([.9, .85, .8, .7]),
      np.array([[0, 10], [20, 30]], float), thresholds=(0.5, 0.7, 0.9))
  # @0.5/0.7: TP FP FP TP -> prec 1, 1/2 at rec 1/2, 1 -> 0.5 + 0.25; @0.9: [22,30] IoU 0.8 < 0.9.
  np.testing.assert_allclose(ap, [0.75, 0.75, 0.5])


def test_hd_ap_averages_distinct_recall_levels():
  # Tied positives count once: precision 1 at recall 2/3, 0.75 at recall 1 -> (1 + 0.75) / 2.
  assert binary_ap(np.array([1, 1, 0, 1.]), np.array([.9, .9, .8, .1])) == 0.875
  assert binary_ap(np.zeros(4), np.arange(4.)) == 0.0
  assert binary_ap(np.ones(4), np.arange(4.)) == 1.0


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop(), "missing"),
    (lambda s: s.append({"qid": 99, "pred_relevant_windows": [[0, 2, .5]],
                         "pred_saliency_scores": [0.1]}), "extra"),
    (lambda s: s[1].update(pred_relevant_windows=[["a", 2, .5]]), "qid 2"),
    (lambda s: s[0].update(pred_relevant_windows=[[0, 2, math.nan]]), "qid 1"),
    (lambda s: s[1].update(pred_saliency_scores=[0.1, math.nan]), "qid 2"),
    (lambda s: s[0].pop("qid"), "no 'qid'"),
])
def test_malformed_predictions_name_the_qid(mutate, message):
  sub = json.loads(json.dumps(SUB))
  mutate(sub)
  with pytest.raises(SubmissionError, match=message):
    evaluate(sub, GT, task="qvhighlights")
