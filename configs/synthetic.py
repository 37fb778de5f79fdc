"""The embedded default: synthetic QVHighlights-format data (data_prep.synthetic), CPU-sized."""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.data_dir = "synthetic_data/tfds"
  c.data.gt_files.val = "synthetic_data/raw/annotations/val.jsonl"
  c.train.batch_size = 32
  c.train.eval_batch_size = 64
  return c
