"""Does InterVid-MR pre-training help? The paper's workflow, measured on the synthetic data.

  python benchmarks/intervid_transfer.py [--captions 3000] [--pretrain-epochs 6] \
      [--finetune-epochs 3] [--init latest] [--workdir workdirs/intervid_transfer]

1. The synthetic QVHighlights-format set of configs/synthetic.py (built if missing) and an
   InterVid-like caption set in the same world, pseudo-labelled by data_prep.intervid_mr.
2. Pre-train on the pseudo-labels (configs/synthetic_intervid_pretrain.py), evaluated zero-shot on
   the synthetic val after every epoch.
3. Fine-tune from it and train from scratch with the same small epoch budget (configs/synthetic.py,
   the same schedule shape for both: one warm-up epoch, the lr halved for the last epoch).
Prints one JSON object: the labelling report and, per run, the best and last val metrics and the
MR mAP after every epoch, next to chance (the pre-training's are zero-shot).

The fine-tuning starts from the pre-training's LATEST checkpoint by default, as the paper's recipe
does: its "best" checkpoint was picked on the target val, which a real zero-shot study may not use.
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


def pick(metrics: dict) -> dict:
  """The KEYS of a brief-metrics dict, rounded."""
  return {k: round(float(metrics[k]), 2) for k in KEYS}


def summary(workdir: str) -> dict:
  """The run's best and last val metrics (KEYS) and its MR mAP after every epoch, read from its
  metrics.jsonl (so a finished run that is not trained again still reports)."""
  evals = [r for r in jsonl.read_jsonl(os.path.join(workdir, "metrics.jsonl")) if KEYS[0] in r]
  return {"best": pick(max(evals, key=lambda r: r[KEYS[0]])), "last": pick(evals[-1]),
          "mr_map_per_epoch": [round(float(r[KEYS[0]]), 2) for r in evals]}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--captions", type=int, default=3000)
  p.add_argument("--pretrain-epochs", type=int, default=6)
  p.add_argument("--finetune-epochs", type=int, default=3)
  p.add_argument("--init", default="latest", choices=("latest", "best"),
                 help="which pre-training checkpoint the fine-tuning starts from")
  p.add_argument("--workdir", default="workdirs/intervid_transfer")
  args = p.parse_args(argv)

  base = synthetic.get_config()
  ensure_synthetic(base)
  pre = synthetic_intervid_pretrain.get_config()
  pre.train.num_epochs = args.pretrain_epochs
  pre.optim.milestones = (args.pretrain_epochs - 1,)
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
  out["chance"] = pick(evaluate(chance, gt, task="qvhighlights")["brief"])

  t0 = time.time()
  pretrain_dir = os.path.join(args.workdir, "pretrain")
  train_and_evaluate(pre, pretrain_dir, progress=False)
  out["pretrain_s"] = round(time.time() - t0, 1)
  for name, init in (("finetune", f"{pretrain_dir}:{args.init}"), ("scratch", "")):
    c = synthetic.get_config()
    c.train.num_epochs = args.finetune_epochs
    c.optim.milestones = (args.finetune_epochs - 1,) if args.finetune_epochs > 1 else ()
    c.train.init_checkpoint = init
    t0 = time.time()
    train_and_evaluate(c, os.path.join(args.workdir, name), progress=False)
    out[f"{name}_s"] = round(time.time() - t0, 1)
  for name in ("pretrain", "finetune", "scratch"):  # pretrain: zero-shot on the target val
    out[name] = summary(os.path.join(args.workdir, name))
  print(json.dumps(out, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
