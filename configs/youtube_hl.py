"""YouTube Highlights (highlight detection only, one domain per run: --config.data.train_split).

  python -m data_prep.build_tfds --dataset youtube_hl --annotations data/youtube_hl/annotations \
      --video-features data/youtube_hl/vid_features --text-features data/youtube_hl/txt_features \
      --data-dir data/youtube_hl/tfds
  python -m launch.train --config configs/youtube_hl.py --workdir workdirs/youtube_hl

Result: not measured here (needs the real features).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.dataset = "youtube_hl"
  c.data.data_dir = "data/youtube_hl/tfds"
  c.data.gt_files.val = "data/youtube_hl/annotations/val.jsonl"
  c.train.batch_size = 4
  c.train.num_epochs = 100
  c.train.best_metric = "mAP"
  # Post-processing: configs/postprocessor/default.yaml (configs/base.py); the windows are not
  # evaluated on this highlight-only task, the saliency is (float16, every valid row).
  c.loss.cost_iou = 4.0  # the official YouTube-HL matcher setting
  c.optim.warmup_epochs = 5
  c.optim.milestones = ()
  return c
