"""QVHighlights fine-tuning from an InterVid-MR pre-training run (architecture.md §7).

    python -m launch.train --config configs/qvhighlights_finetune.py --workdir W \
      --config.train.init_checkpoint=workdirs/intervid_pretrain   # [:latest|best|STEP], default latest

Result: not measured here (needs the real features).
"""

from configs import qvhighlights


def get_config():
  c = qvhighlights.get_config()
  c.seed = 42
  c.train.num_epochs = 50
  c.train.init_checkpoint = "workdirs/intervid_pretrain"
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 5
  c.optim.warmup_init_lr = 1e-5
  c.optim.milestones = (10, 30)
  return c
