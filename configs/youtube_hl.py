"""YouTube Highlights (highlight detection only, one domain per run: --config.data.train_split)."""

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
