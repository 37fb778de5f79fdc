"""The embedded default: synthetic QVHighlights-format data (data_prep.synthetic), CPU-sized.

The architecture is the full SG-DETR (every module and loss); only the width shrinks (d 128,
FFN 512) and the schedule is compressed so that training + evaluation take a few minutes on two
CPU cores. The dataset is generated and built by `launch.train` on first use.

  python -m launch.train --config configs/synthetic.py --workdir workdirs/synthetic

Result (seed 0, 2 CPU cores, README; commit 1beba23): 6 min 24 s end to end from a fresh
checkout (data generation and TFDS build, compiles, 8 evaluations). Best checkpoint (epoch 8,
picked by the DETR head's MR mAP) on synthetic val, 250 queries:
  DETR head: MR-full-mAP 24.29, MR-full-R1@0.5 53.60, MR-full-mAP@0.5 49.79,
      HL-min-VeryGood-mAP 44.15, HL-min-Good-mAP 60.73, HL-min-VeryGood-Hit1 57.20
  DETR + ATSS fused: MR-full-mAP 25.22, MR-full-R1@0.5 52.80, MR-full-mAP@0.5 47.39
  untrained cosine baseline: MR-full-mAP 5.01, MR-full-R1@0.5 2.40, HL-min-VeryGood-mAP 35.27
Other seeds (earlier code, commit 3947462): README. `python benchmarks/seeds.py --seeds=0,1,2,3,4`
runs several seeds.
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
