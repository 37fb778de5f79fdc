"""TVSum (highlight detection only, top-5 mAP; one domain per build).

  python -m data_prep.build_tfds --dataset tvsum --domain BK --annotations data/tvsum/annotations \
      --video-features data/tvsum/vid_features --text-features data/tvsum/txt_features \
      --data-dir data/tvsum/tfds
  python -m launch.train --config configs/tvsum.py --workdir workdirs/tvsum_BK

Result: not measured here (needs the real features).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.dataset = "tvsum"
  c.data.data_dir = "data/tvsum/tfds"
  c.data.gt_files.val = "data/tvsum/annotations/tvsum_val.jsonl"
  c.train.batch_size = 4
  c.train.num_epochs = 200
  c.train.best_metric = "mAP"  # top-5 mAP
  # Post-processing: configs/postprocessor/default.yaml (configs/base.py); HD only, as YouTube-HL.
  c.optim.warmup_epochs = 5
  c.optim.milestones = ()
  return c
