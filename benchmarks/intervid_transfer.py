"""Does InterVid-MR pre-training help? The paper's workflow, measured on the synthetic data.

  python benchmarks/intervid_transfer.py [--captions 3000] [--pretrain-epochs 3] \
      [--finetune-epochs 2] [--workdir workdirs/intervid_transfer]

1. The synthetic QVHighlights-format set of configs/synthetic.py (built if missing) and an
   InterVid-like caption set in the same world, pseudo-labelled by data_prep.intervid_mr.
2. Pre-train on the pseudo-labels (configs/synthetic_intervid_pretrain.py); its best checkpoint is
   evaluated zero-shot on the synthetic val.
3. Fine-tune from it and train from scratch with the same small epoch budget (configs/synthetic.py).
Prints one JSON object: the labelling report and, per run, the val metrics, next to chance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import intervid_mr_labels, synthetic, synthetic_intervid_pretrain  # noqa: E402
from data_prep import intervid_mr  # noqa: E402
from data_prep import synthetic as synthetic_data  # noqa: E402
from launch.train import ensure_synthetic  # noqa: E402
from sg_detr_jax import jsonl  # noqa: E402
from sg_detr_jax.baselines import cosine  # noqa: E402
from sg_detr_jax.evaluation import evaluate  # noqa: E402
from sg_detr_jax.training.loop import train_and_evaluate  # noqa: E402

KEYS = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-mAP@0.5", "HL-min-VeryGood-mAP")


def brief(metrics: dict) -> dict:
  return {k: round(float(metrics["brief"][k]), 2) for k in KEYS}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--captions", type=int, default=3000)
  p.add_argument("--pretrain-epochs", type=int, default=3)
  p.add_argument("--finetune-epochs", type=int, default=2)
  p.add_argument("--workdir", default="workdirs/intervid_transfer")
  args = p.parse_args(argv)

  base = synthetic.get_config()
  ensure_synthetic(base)
  pre = synthetic_intervid_pretrain.get_config()
  pre.train.num_epochs = args.pretrain_epochs
  labelled = os.path.dirname(pre.data.data_dir)  # .../intervid (its tfds/ is the data_dir)
  raw = labelled + "_raw"
  out = {"captions": args.captions}
  t0 = time.time()
  if not os.path.isdir(pre.data.data_dir):
    synthetic_data.generate_intervid(raw, args.captions, seed=base.seed,
                                     video_dim=base.data.video_dim, text_dim=base.data.text_dim)
    intervid_mr.run(intervid_mr_labels.get_config(), os.path.join(raw, "captions.jsonl"),
                    os.path.join(raw, "video_features"), os.path.join(raw, "caption_features"),
                    labelled, workers=os.cpu_count() or 1)
  with open(os.path.join(labelled, "report.json")) as f:
    out["labelling"] = json.load(f)
  out["labelling_s"] = round(time.time() - t0, 1)

  gt = jsonl.read_jsonl(base.data.gt_files.val)
  chance = cosine.predict(base.data.data_dir, "qvhighlights", "val", "chance")
  out["chance"] = brief(evaluate(chance, gt, task="qvhighlights"))

  runs = {}
  t0 = time.time()
  runs["pretrain_zero_shot"] = train_and_evaluate(pre, os.path.join(args.workdir, "pretrain"),
                                                  progress=False)
  out["pretrain_s"] = round(time.time() - t0, 1)
  for name, init in (("finetune", os.path.join(args.workdir, "pretrain")), ("scratch", "")):
    c = synthetic.get_config()
    c.train.num_epochs = args.finetune_epochs
    c.optim.milestones = ()
    c.train.init_checkpoint = init
    t0 = time.time()
    runs[name] = train_and_evaluate(c, os.path.join(args.workdir, name), progress=False)
    out[f"{name}_s"] = round(time.time() - t0, 1)
  out.update({name: brief(m) for name, m in runs.items()})
  print(json.dumps(out, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
