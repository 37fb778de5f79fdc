"""InterVid-MR pre-training (architecture.md §7-8): 30 epochs, batch 256, evaluated zero-shot on
QVHighlights val after every epoch.

  python -m data_prep.intervid_mr --captions ... --out data/intervid_mr     # pseudo-labels + TFDS
  python -m launch.train --config configs/intervid_mr_pretrain.py --workdir workdirs/intervid_pretrain
  python -m launch.train --config configs/qvhighlights_finetune.py --workdir workdirs/qvh_ft \
      --config.train.init_checkpoint=workdirs/intervid_pretrain

Result: not measured here (needs the real features). The CPU-sized rehearsal on synthetic data is
configs/synthetic_intervid_pretrain.py.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 42
  c.data.dataset = "intervid_mr"
  c.data.data_dir = "data/intervid_mr/tfds"  # {out}/tfds of data_prep.intervid_mr
  # Zero-shot evaluation: the QVHighlights build (data_prep.build_tfds) and its val annotations.
  c.data.eval_dataset = "qvhighlights"
  c.data.eval_data_dir = "data/qvhighlights/tfds"
  c.data.gt_files.val = "data/qvhighlights/annotations/highlight_val_release.jsonl"
  c.data.eval_split = "val"
  c.train.batch_size = 256
  c.train.num_epochs = 30
  c.optim.warmup_epochs = 4
  c.optim.warmup_init_lr = 1e-5
  c.optim.milestones = (20, 27)
  c.optim.gamma = 0.1
  return c
