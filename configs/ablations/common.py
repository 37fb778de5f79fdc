"""The paper's Table 2 ablation rows on QVHighlights: each row adds one component to the previous.

(a) DETR + local saliency head + standard cross-attention (learned Q/K/V, no saliency gate)
(b) + SGCA (no per-layer projections, post-softmax sigmoid(S_local) gate)
(c) + IoU scoring head (eq. 10)
(d) + saliency amplifier and global saliency (eq. 7-9)
(e) + hybrid ATSS head and its collab query group = the full model

A row by its letter (the same config as configs/ablations/row_c.py):

  python -m launch.train --config configs/ablations/common.py:c --workdir workdirs/ablation_c

Result: not measured here (needs the real features).
"""

from configs import qvhighlights

ROWS = "abcde"


def get_config(row: str):
  if row not in ROWS:
    raise ValueError(f"ablation row must be one of {ROWS!r}")
  c = qvhighlights.get_config()
  m = c.model
  upto = ROWS.index(row)
  m.sgca_gated = upto >= 1
  m.sgca_qkv_proj = upto < 1
  m.iou_head = upto >= 2
  m.saliency_amplifier = m.global_saliency = upto >= 3
  m.atss = m.collab = upto >= 4
  return c
