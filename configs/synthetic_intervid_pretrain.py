"""Synthetic InterVid-MR pre-training, evaluated zero-shot on the synthetic QVHighlights-format val
(the CPU-sized rehearsal of configs/intervid_mr_pretrain.py; benchmarks/intervid_transfer.py runs the
whole pretrain -> zero-shot -> fine-tune comparison).

  python -m data_prep.synthetic --out synthetic_data/intervid_raw --intervid 3000
  python -m data_prep.intervid_mr --captions synthetic_data/intervid_raw/captions.jsonl \
      --video-features synthetic_data/intervid_raw/video_features \
      --caption-features synthetic_data/intervid_raw/caption_features --out synthetic_data/intervid
  python -m launch.train --config configs/synthetic_intervid_pretrain.py --workdir W
"""

from configs import synthetic


def get_config():
  c = synthetic.get_config()
  c.data.dataset = "intervid_mr"
  c.data.data_dir = "synthetic_data/intervid/tfds"
  c.data.synthetic_raw_dir = ""  # built by the commands above, not by launch.train
  c.data.eval_dataset = "qvhighlights"
  c.data.eval_data_dir = "synthetic_data/tfds"  # the main job's synthetic set (same word vectors)
  # As configs/synthetic.py: one warm-up epoch, the lr halved for the last one. Six epochs: at
  # three, the zero-shot MR mAP had not left its plateau (benchmarks/intervid_transfer.py).
  c.train.num_epochs = 6
  c.optim.warmup_epochs = 1
  c.optim.milestones = (5,)
  return c
