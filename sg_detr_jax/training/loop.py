"""Train and evaluate: the loop behind `python -m launch.train`.

One epoch = len(train split) // batch_size steps. After every `eval_every_epochs` epochs the
validation split is predicted and scored; every epoch ends with a checkpoint (train state, input
iterator state, config), so re-running on the same workdir resumes exactly where it stopped. A
SIGTERM (a scheduler's preemption notice) stops every process at one agreed step with a checkpoint
of that step (`training/preemption.py`) and raises `Preempted`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
from tqdm import tqdm

from sg_detr_jax import jsonl, sharding
from sg_detr_jax.data.pipeline import device_arrays, train_dataset
from sg_detr_jax.inference.evaluate_split import evaluate_split, gt_file
from sg_detr_jax.inference.overlap import batches_ahead
from sg_detr_jax.models import sg_detr
from sg_detr_jax.training import collab_size, provenance
from sg_detr_jax.training import steps as steps_lib
from sg_detr_jax.training.checkpoints import Checkpoints, load_params
from sg_detr_jax.training.logger import MetricLogger, WindowMean
from sg_detr_jax.training.optimizer import make_model_optimizer
from sg_detr_jax.training.preemption import Preempted, Preemption


class NonFiniteLossError(FloatingPointError):
  pass


def build(config, steps_per_epoch: int):
  """(graphdef, fresh train state, tx, schedule) for `config`. With one device the state is
  committed to it, as a restored one is: jit keys its cache on committedness too, so fresh and
  resumed states (a resumed run, a test session, a notebook) share one compiled step. (With
  several devices, callers place it on their mesh, `sharding.replicate`.)"""
  model = sg_detr.create(config)
  tx, schedule = make_model_optimizer(config, steps_per_epoch)
  graphdef, state = steps_lib.init_state(model, tx)
  if jax.device_count() == 1:
    state = jax.device_put(state, jax.local_devices()[0])
  return graphdef, state, tx, schedule


def _init_from(config, graphdef, state, tx):
  """Replaces the params by those of `config.train.init_checkpoint` (workdir[:latest|best|STEP]).

  The default is the run's latest checkpoint, the end of the pre-training as in the paper's
  recipe: a pre-training run's "best" was picked on the target's val set (its zero-shot
  evaluation), and early best checkpoints made worse starting points in
  benchmarks/intervid_transfer.py.
  """
  path, _, which = config.train.init_checkpoint.partition(":")
  _, params = load_params(path, state["params"], which or "latest", best_falls_back=False)
  return dict(state, params=params)


def train_and_evaluate(config, workdir: str, progress: bool = True) -> dict | None:
  """Trains `config` in `workdir` (resuming if it holds checkpoints).

  Returns the best metrics among the evaluations this call ran (None when it ran none, e.g. the
  run in `workdir` was already complete); `workdir/metrics.jsonl` holds every evaluation's brief
  metrics across resumes.
  """
  t = config.train
  batches_ahead(config)  # checked now, not at the first evaluation an epoch in
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(config.mesh)
  axis = config.mesh.data_axis
  sharding.check_batch_size(t.batch_size, mesh, axis)
  sharding.check_batch_size(t.eval_batch_size, mesh, axis)
  # Every process feeds its own rows of each global batch (the same batches whatever the
  # process count, so a checkpoint resumes under another process count).
  ds, num_examples = train_dataset(config.data, t.batch_size, config.seed, jax.process_index(),
                                   jax.process_count())
  steps_per_epoch = num_examples // t.batch_size
  total_steps = steps_per_epoch * t.num_epochs
  if t.max_steps > 0:
    total_steps = min(total_steps, t.max_steps)
  if config.model.collab:
    size = collab_size.resolve(config)  # before the model is built: a static shape
    if jax.process_index() == 0:  # every process computes it; one says it
      print(f"collab query group: {size} slots (the most ATSS positives of a training example)",
            file=sys.stderr)
  graphdef, state, tx, schedule = build(config, steps_per_epoch)
  # One device: no shardings (the same executable as make_*_step(config, ...) elsewhere in this
  # process, e.g. the evaluation after training) and default placement.
  step_mesh = sharding.step_mesh(mesh)
  if step_mesh is not None:
    state = sharding.replicate(state, mesh)  # restores below keep this placement
  ckpts = Checkpoints(workdir, t.keep_best)
  iterator = iter(ds)
  latest = ckpts.latest()
  if latest is not None:
    state, data_state = ckpts.restore(latest, state)
    iterator.set_state(data_state)
  elif t.init_checkpoint:
    state = _init_from(config, graphdef, state, tx)
  if jax.process_index() == 0:
    jsonl.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    provenance.record(workdir, config.seed)

  train_step = steps_lib.make_train_step(config, steps_per_epoch, step_mesh)
  predict_step = steps_lib.make_predict_step(config, step_mesh)
  base_key = jax.random.key(config.seed, impl=t.prng_impl)
  logger = MetricLogger(workdir, enabled=jax.process_index() == 0)
  step = int(state["step"])
  bar = tqdm(total=total_steps, initial=step, disable=not progress, dynamic_ncols=True,
             desc="train")
  best = None
  window = WindowMean()  # the steps since the last log, summed on the device
  tick, tick_step = time.time(), step
  try:
    with Preemption() as preemption:
      while step < total_steps:
        batch = next(iterator)
        arrays = device_arrays(batch)
        if step_mesh is not None:
          arrays = sharding.shard_batch(arrays, mesh, axis)
        state, step_metrics = train_step(state, arrays, base_key)
        window.add(step_metrics)
        step += 1
        bar.update(1)
        epoch_end = step % steps_per_epoch == 0 or step == total_steps
        if step % t.log_every_steps == 0 or epoch_end:
          scalars = window.result()  # means over the steps since the last log
          if not math.isfinite(scalars["loss"]):
            bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
            raise NonFiniteLossError(
                f"steps {tick_step + 1}-{step}: the loss is not finite (non-finite means: "
                f"{', '.join(bad)}); training stopped, the last good checkpoint in "
                f"{ckpts.directory} is kept (step {ckpts.latest()})")
          # Epoch ends also log, so count the steps actually taken since the previous log.
          scalars["steps_per_sec"] = (step - tick_step) / max(time.time() - tick, 1e-9)
          tick, tick_step = time.time(), step
          logger.write(step, "train", scalars)
          bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{scalars['lr']:.2e}")
        if epoch_end:
          metrics = _evaluate_epoch(config, predict_step, state, step, steps_per_epoch,
                                    total_steps, logger, bar)
          if metrics is not None and (best is None or metrics[0] > best[0]):
            best = metrics
          # Asynchronous: written while the next epoch trains (the previous epoch's save is
          # waited for first); a kill during the write leaves the previous checkpoints untouched.
          ckpts.save(step, state, iterator.get_state(), config,
                     None if metrics is None else metrics[0])
        if preemption.reached(step):  # every process stops here, at the same step
          if not epoch_end:
            ckpts.save(step, state, iterator.get_state(), config)
          raise Preempted(step, ckpts.directory)
  finally:
    bar.close()
    logger.close()
    ckpts.close()  # waits until the last save is on disk
  return best[1] if best else None


def _evaluate_epoch(config, predict_step, state, step: int, steps_per_epoch: int,
                    total_steps: int, logger, bar) -> tuple[float, dict] | None:
  """(score, metrics) of the validation split at this epoch end; None when the config evaluates
  no split here (no labels, or not an evaluation epoch)."""
  t = config.train
  epoch = math.ceil(step / steps_per_epoch)
  if not gt_file(config, config.data.eval_split) or not (
      epoch % t.eval_every_epochs == 0 or step == total_steps):
    return None
  # The head whose metrics pick the best checkpoint (official QVHighlights: the DETR head).
  metrics = evaluate_split(predict_step, state["params"], config, config.data.eval_split,
                           head=t.best_head)
  brief = metrics["brief"]
  logger.write(step, "eval", {k: float(v) for k, v in brief.items()})
  if t.best_metric not in brief:
    raise KeyError(f"train.best_metric {t.best_metric!r} is not a metric of this "
                   f"dataset; choose one of {sorted(brief)}")
  score = brief[t.best_metric]
  # stderr, with the progress bar: stdout stays free for a caller's own output (benchmarks print
  # one JSON object there).
  if jax.process_index() == 0:
    bar.write(f"epoch {epoch} step {step}: {t.best_metric} = {score:.2f}", file=sys.stderr)
  return score, metrics
