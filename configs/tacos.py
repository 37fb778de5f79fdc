"""TACoS (2-s clips, long videos up to 750 clips; architecture.md §7 table)."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.dataset = "tacos"
  c.data.data_dir = "data/tacos/tfds"
  c.data.eval_split = "test"
  c.data.gt_files.test = "data/tacos/annotations/test.jsonl"
  c.data.max_video_clips = 750
  c.model.prior_prob = 0.2
  c.model.pooling_layers = 1
  c.train.batch_size = 32
  c.train.num_epochs = 120
  c.train.best_metric = "MR-full-R1@0.3"
  c.optim.warmup_epochs = 20
  c.optim.milestones = (70, 85)
  return c
