"""Charades-STA (1-s clips, binary saliency from the windows; architecture.md §7 table)."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.dataset = "charades_sta"
  c.data.data_dir = "data/charades_sta/tfds"
  c.data.eval_split = "test"
  c.data.gt_files.test = "data/charades_sta/annotations/charades_sta_test_tvr_format.jsonl"
  c.data.max_video_clips = 200
  c.model.prior_prob = 0.25
  c.model.atss_top_k = 18
  c.train.batch_size = 64
  c.train.num_epochs = 100
  c.train.best_metric = "MR-full-R1@0.5"
  c.optim.warmup_epochs = 20
  c.optim.milestones = (40, 50)
  return c
