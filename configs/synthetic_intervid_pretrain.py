"""Synthetic InterVid-MR pre-training, evaluated zero-shot on the synthetic QVHighlights-format val
(the CPU-sized rehearsal of configs/intervid_mr_pretrain.py; benchmarks/intervid_transfer.py runs the
whole pretrain -> zero-shot -> fine-tune comparison).

  python -m data_prep.synthetic --out synthetic_data/intervid_raw --intervid 3000
  python -m data_prep.intervid_mr --captions synthetic_data/intervid_raw/captions.jsonl \
      --video_features synthetic_data/intervid_raw/video_features \
      --caption_features synthetic_data/intervid_raw/caption_features --out synthetic_data/intervid
  python -m launch.train --config configs/synthetic_intervid_pretrain.py --workdir W

Result (`python benchmarks/intervid_transfer.py --captions 2000 --pretrain-epochs 6
--finetune-epochs 3`, 2 CPU cores, 22 min for the whole comparison; measured before the
official-fidelity changes of the initialisation, losses and optimizer), zero-shot on synthetic val
after 6 epochs: MR-full-mAP 7.20, R1@0.5 17.60, mAP@0.5 16.02, HL-min-VeryGood-mAP 45.26;
fine-tuned from it for 3 epochs (configs/synthetic.py): MR-full-mAP 18.43, R1@0.5 28.40.
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
