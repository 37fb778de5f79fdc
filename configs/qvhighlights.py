"""QVHighlights with the official InternVideo2 features (the released SG-DETR configuration).

Build the dataset first (README, "Real datasets"):
  python -m data_prep.build_tfds --dataset qvhighlights --annotations data/qvhighlights/annotations \
      --video-features data/qvhighlights/vid_features --text-features data/qvhighlights/txt_features \
      --data-dir data/qvhighlights/tfds
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.data_dir = "data/qvhighlights/tfds"
  c.data.gt_files.val = "data/qvhighlights/annotations/highlight_val_release.jsonl"
  return c
