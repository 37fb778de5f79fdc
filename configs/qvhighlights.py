"""QVHighlights with the official InternVideo2 features (the released SG-DETR configuration).

Build the dataset first (README, "Real data"), then train and evaluate:

  python -m data_prep.build_tfds --dataset qvhighlights --annotations data/qvhighlights/annotations \
      --video-features data/qvhighlights/vid_features --text-features data/qvhighlights/txt_features \
      --data-dir data/qvhighlights/tfds
  python -m launch.train --config configs/qvhighlights.py --workdir workdirs/qvh
  python -m launch.evaluate --config configs/qvhighlights.py --workdir workdirs/qvh --split test

Result: not measured here (needs the real features).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.data_dir = "data/qvhighlights/tfds"
  c.data.gt_files.val = "data/qvhighlights/annotations/highlight_val_release.jsonl"
  return c
