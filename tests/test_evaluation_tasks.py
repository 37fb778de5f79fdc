"""Charades-STA / TACoS / TVSum / YouTube-HL metrics on cases worked out by hand."""

import numpy as np
import pytest

from sg_detr_jax.evaluation import evaluate
from sg_detr_jax.evaluation.highlight_only import trapezoid_ap


def test_charades_r1_and_miou_by_hand():
  gt = [{"qid": 1, "duration": 30.0, "relevant_windows": [[0.0, 10.0]]},
        {"qid": 2, "duration": 30.0, "relevant_windows": [[10.0, 20.0]]},
        {"qid": 3, "duration": 30.0, "relevant_windows": [[5.0, 9.0]]}]
  sub = [{"qid": 1, "pred_relevant_windows": [[0.0, 8.0, .9], [20, 30, .1]]},    # IoU 0.8
         {"qid": 2, "pred_relevant_windows": [[12.0, 22.0, .9]]},                 # 8 / 12 = 0.667
         {"qid": 3, "pred_relevant_windows": [[9.0, 15.0, .9]]}]                  # touching: 0
  m = evaluate(sub, gt, task="charades_sta")
  full = m["full"]
  assert full["MR-R1"]["0.3"] == 66.67 and full["MR-R1"]["0.5"] == 66.67
  assert full["MR-R1"]["0.7"] == 33.33
  assert full["MR-mIoU"] == round(100 * (0.8 + 8 / 12 + 0) / 3, 2)
  assert m["brief"]["MR-full-R1@0.7"] == 33.33
  # Every window is <= 10 s long, so the long bucket is empty: CG reports zeros.
  assert m["long"]["MR-mAP"]["average"] == 0.0 and "MR-mIoU" not in m["long"]
  assert "HL-min-Fair" not in m


def test_tacos_string_qids():
  gt = [{"qid": "s1-d2_0", "duration": 100.0, "relevant_windows": [[10.0, 30.0]]}]
  sub = [{"qid": "s1-d2_0", "pred_relevant_windows": [[10.0, 20.0, .5]]}]
  assert evaluate(sub, gt, task="tacos")["full"]["MR-mIoU"] == 50.0


def test_trapezoid_ap_by_hand():
  # ranked [1, 0, 1], 2 positives: (0.5-0)*(1+1)/2 + 0 + (1-0.5)*(0.5+2/3)/2 = 0.5 + 0.29167
  assert trapezoid_ap(np.array([1., 0., 1.]), 2) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
  assert trapezoid_ap(np.array([0., 0.]), 0) == 0.0


def test_youtube_skips_videos_without_positives():
  gt = [{"qid": "a", "label": [[0], [1], [0], [1]], "domain": "dog"},
        {"qid": "b", "label": [[0], [0]], "domain": "dog"}]
  sub = [{"qid": "a", "pred_saliency_scores": [0.9, 0.8, 0.1, 0.7]},   # ranked labels 0,1,1,0
         {"qid": "b", "pred_saliency_scores": [0.3, 0.1]}]
  # ranked [0,1,1,0]: rec 0->0 (prec 1->0), 0->.5 (prec 0->.5): .5*.25, .5->1 (.5->2/3): .5*.5833
  expected = 0.5 * 0.25 + 0.5 * (0.5 + 2 / 3) / 2
  m = evaluate(sub, gt, task="youtube_hl")
  assert m["brief"]["mAP"] == round(expected, 5)  # video "b" is not in the mean
  assert m["domains"] == {"dog": round(expected, 5)}


def test_tvsum_top5_lower_median():
  # 6 clips, 2 annotators. Column 0: sorted [1,1,2,3,4,5] lower median (index 2) = 2 ->
  # positives where > 2: clips 3,4,5. Column 1 constant 3 -> no positive -> AP 0.
  labels = [[1, 3], [1, 3], [2, 3], [3, 3], [4, 3], [5, 3]]
  scores = [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]  # ranking 0..5; top 5 labels of col 0: 0,0,0,1,1
  gt = [{"qid": "v", "label": labels, "domain": "BK"}]
  sub = [{"qid": "v", "pred_saliency_scores": scores}]
  # P = 2 positives in the top 5: ranks 4 and 5 -> rec .5 at prec 1/4, 1 at prec 2/5.
  ap0 = 0.5 * (0 + 0.25) / 2 + 0.5 * (0.25 + 0.4) / 2
  # The first three ranks are misses: rec stays 0, prec 1 -> 0 (contributes nothing).
  m = evaluate(sub, gt, task="tvsum")
  assert m["brief"]["mAP"] == round((ap0 + 0.0) / 2, 5)
