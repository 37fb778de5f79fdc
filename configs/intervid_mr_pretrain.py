"""InterVid-MR pre-training (architecture.md §7-8): QVHighlights format, 30 epochs, batch 256."""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 42
  c.data.data_dir = "data/intervid_mr/tfds"
  c.data.gt_files.val = "data/qvhighlights/annotations/highlight_val_release.jsonl"
  c.data.eval_split = "val"
  c.train.batch_size = 256
  c.train.num_epochs = 30
  c.optim.warmup_epochs = 4
  c.optim.warmup_init_lr = 1e-5
  c.optim.milestones = (20, 27)
  c.optim.gamma = 0.1
  return c
