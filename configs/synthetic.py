"""The embedded default: synthetic QVHighlights-format data (data_prep.synthetic), CPU-sized.

The architecture is the full SG-DETR (every module and loss); only the width shrinks (d 128,
FFN 512) and the schedule is compressed so that training + evaluation take a few minutes on two
CPU cores. The dataset is generated and built by `launch.train` on first use.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.data_dir = "synthetic_data/tfds"
  c.data.synthetic_raw_dir = "synthetic_data/raw"  # generated on first use by launch.train
  c.data.gt_files.val = "synthetic_data/raw/annotations/val.jsonl"
  c.model.d_model = 128
  c.model.ffn_dim = 512
  # Few steps (a few hundred) on a small dataset: light regularisation learns the planted
  # alignment much faster than the QVHighlights recipe (input dropout 0.5, drop-path 0.15).
  c.model.input_dropout = 0.1
  c.model.drop_path = 0.0
  c.train.batch_size = 16  # more updates per CPU-second than 32 (step time is linear in batch)
  c.train.eval_batch_size = 64
  c.train.num_epochs = 8
  c.train.log_every_steps = 10
  c.optim.lr = 1e-3
  c.optim.warmup_epochs = 1
  c.optim.warmup_init_lr = 1e-4
  c.optim.milestones = (7,)
  return c
