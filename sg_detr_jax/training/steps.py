"""Pure, jit-compiled train and eval steps over `nnx.split` state (plain `jax.jit`, no nnx.jit).

TrainState is a plain pytree: {"params": nnx.State of the model's Params, "opt_state": optax
state, "step": int32 scalar}. A step is a pure function of (state, batch, key) and of the config,
which is a static argument: the model graph, the optimizer and the schedule are all built from
the config while the step is traced (the steps per epoch are a traced scalar). The steps receive
only the part of the config they read (`step_config`: model, loss, optim, the mesh axis and the
data's input widths), as an immutable, hashable `ml_collections.FrozenConfigDict`. So jit's own
cache serves a step built again in the same process (evaluation after training, a resumed run, a
notebook, a run that differs only in its schedule length, dataset size, data folder or logging)
without a second compilation, and a change that reaches the step compiles anew. (`loop.build`
commits a fresh state to its device, as a restored one is: jit's cache tells committed and
uncommitted arguments apart.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sg_detr_jax import sharding
from sg_detr_jax.losses.total import compute_losses
from sg_detr_jax.models import atss, outputs, precision, sg_detr
from sg_detr_jax.training.optimizer import make_model_optimizer

# Batch entries the model consumes in floating point (cast to the compute dtype).
_FLOAT_INPUTS = ("video", "text")


def init_state(model: nnx.Module, tx: optax.GradientTransformation):
  """(graphdef, TrainState) of a freshly built model."""
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, {"params": params, "opt_state": tx.init(params),
                    "step": jnp.zeros((), jnp.int32)}


def model_graph(config) -> nnx.GraphDef:
  """The graph definition of `config`'s model, built abstractly (no parameter is computed; the
  seed only changes parameter values, so any seed gives the same graph). Built once per process
  and step config: every trace of a step asks for it, and an abstract build of the whole model
  takes seconds (~1.6 s for configs/tiny.py)."""
  return _model_graph(step_config(config))


@functools.lru_cache(maxsize=16)
def _model_graph(frozen: ml_collections.FrozenConfigDict) -> nnx.GraphDef:
  return nnx.split(nnx.eval_shape(lambda: sg_detr.create(frozen, rng_seed=0)), nnx.Param)[0]


# The fields of config.data that shape the model (its input widths and the window slots).
_MODEL_DATA_FIELDS = ("video_dim", "text_dim", "use_tef", "max_windows")


def step_config(config) -> ml_collections.FrozenConfigDict:
  """The part of `config` the steps read, frozen (hashable): the static argument of the steps.

  A snapshot of the values (`to_dict`): a FrozenConfigDict made from a ConfigDict keeps that
  ConfigDict and hashes and compares through it, so a config changed after a step was built
  would change the key jit's cache holds, and the next step built from it would find the stale
  compiled program."""
  return ml_collections.FrozenConfigDict({
      "model": config.model.to_dict(), "loss": config.loss.to_dict(),
      "optim": config.optim.to_dict(),
      "mesh": {"data_axis": config.mesh.data_axis},
      "data": {k: config.data[k] for k in _MODEL_DATA_FIELDS}})


def _model_inputs(batch, dtype):
  return {k: (v.astype(dtype) if k in _FLOAT_INPUTS else v) for k, v in batch.items()}


def _replicate(tree, mesh):
  """Outputs of a sharded step are replicated (the state stays identical on every device)."""
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, sharding.replicated(mesh))


def loss_fn(params, batch, key, *, graphdef, config, mesh=None):
  """(total loss, (unweighted terms, statistics)) of one training forward."""
  dtype = precision.compute_dtype(config.model.dtype)
  model = nnx.merge(graphdef, precision.cast_floating(params, dtype))
  # The ATSS assignment depends on the ground truth and the anchors only: it is a target.
  targets = atss.training_targets(batch, config.model) if model.uses_atss else None
  out = model(_model_inputs(batch, dtype), key=key, train=True, atss_targets=targets)
  total, terms = compute_losses(out, targets, batch, config, mesh)
  # Not a loss: the collab group the official code would build for this batch (max_b |P_b|).
  stats = {} if out.collab_positives is None else {"collab_positives": out.collab_positives}
  return total, (terms, stats)


@functools.partial(jax.jit, static_argnames=("config", "mesh"), donate_argnums=(0,))
def train_step(state, batch, base_key, *, config, steps_per_epoch, mesh=None):
  """One optimizer step: (state, batch, base key) -> (state, metrics); the key is folded with the
  step number. With a `mesh`, the batch arrives split over `config.mesh.data_axis`
  (`sharding.shard_batch`) and the state replicated; the outputs are replicated.
  `steps_per_epoch` (an int32 scalar) is an argument, not part of the program: runs on datasets
  of other sizes share the compiled step."""
  tx, schedule = make_model_optimizer(config, steps_per_epoch)
  key = jax.random.fold_in(base_key, state["step"])
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, graphdef=model_graph(config),
                                                 config=config, mesh=mesh), has_aux=True)
  (total, (terms, stats)), grads = grad_fn(state["params"], batch, key)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  # A non-finite loss leaves params and optimizer state untouched, so the state stays the last
  # good one until the host sees the loss at the next log step and stops training.
  finite = jnp.isfinite(total)
  keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
  params = jax.tree_util.tree_map(keep, params, state["params"])
  opt_state = jax.tree_util.tree_map(keep, opt_state, state["opt_state"])
  metrics = dict(terms, **stats, loss=total, grad_norm=optax.global_norm(grads),
                 lr=schedule(state["step"]))
  return _replicate(({"params": params, "opt_state": opt_state, "step": state["step"] + 1},
                     metrics), mesh)


@functools.partial(jax.jit, static_argnames=("config", "mesh"))
def predict_step(params, batch, *, config, mesh=None):
  """params, batch -> `Predictions` in float32 (inference mode). With a `mesh`, params are
  replicated and the batch split over `config.mesh.data_axis`; the predictions are gathered
  (replicated), so every process reads the whole batch's (a small all-gather). Without one, in
  parts of `model.predict_rows_per_part[backend]` rows (0: the whole batch)."""
  dtype = precision.compute_dtype(config.model.dtype)
  model = nnx.merge(model_graph(config), precision.cast_floating(params, dtype))
  inputs = _model_inputs(batch, dtype)
  # (.get: the config.json of a workdir trained before the field existed has none)
  rows = config.model.get("predict_rows_per_part", {}).get(jax.default_backend(), 0)
  if mesh is None and 0 < rows < batch["video_mask"].shape[0]:  # (a mesh splits the batch already)
    out = _predict_in_parts(model, inputs, rows)
  else:
    out = model(inputs, train=False)
  return _replicate(precision.cast_floating(out, jnp.float32), mesh)


def _predict_in_parts(model, inputs: dict, rows: int):
  """The model's inference forward over parts of `rows` rows of the batch, one after another, as
  the whole batch's `Predictions` (a CPU runs a part whose activations fit its caches faster).
  The ATSS anchor grid stays the whole batch's, so the predictions are the same. The equal parts
  go through one `lax.scan` unrolled by two (the model compiles for two parts, not once per part;
  measured faster than one part per iteration and than all parts unrolled, whose compile grows
  with their number), a shorter last part through its own call."""
  size = inputs["video_mask"].shape[0]
  grid_len = inputs["video_mask"].astype(bool).sum(axis=1).max()
  run = lambda part: model(part, train=False, grid_len=grid_len)  # noqa: E731
  whole = size - size % rows
  _, stacked = jax.lax.scan(lambda carry, part: (carry, run(part)), None,
                            {k: v[:whole].reshape((-1, rows) + v.shape[1:])
                             for k, v in inputs.items()}, unroll=2)
  rest = run({k: v[whole:] for k, v in inputs.items()}) if whole < size else None
  return outputs.join_parts(stacked, rest)


def make_train_step(config, steps_per_epoch: int, mesh=None):
  """train_step(state, batch, base_key) -> (state, metrics) of `config` (see `train_step`)."""
  return functools.partial(train_step, config=step_config(config),
                           steps_per_epoch=np.int32(steps_per_epoch), mesh=mesh)


def make_predict_step(config, mesh=None):
  """predict_step(params, batch) -> `Predictions` of `config` (see `predict_step`). With a
  `mesh`, `batch` is the whole (global) numpy batch on every process: each device gets its rows
  (`sharding.global_batch`), and the predictions come back whole on every process."""
  step = functools.partial(predict_step, config=step_config(config), mesh=mesh)
  if mesh is None:
    return step
  axis = config.mesh.data_axis
  rep = sharding.replicated(mesh)
  return lambda params, batch: step(jax.device_put(params, rep),
                                    sharding.global_batch(batch, mesh, axis))
