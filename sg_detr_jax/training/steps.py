"""Pure, jit-compiled train and eval steps over `nnx.split` state (plain `jax.jit`, no nnx.jit).

TrainState is a plain pytree: {"params": nnx.State of the model's Params, "opt_state": optax
state, "step": int32 scalar}. The model graph is static (closed over), so a step is a pure function
of (state, batch, key) and is compiled once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sg_detr_jax import sharding
from sg_detr_jax.losses.total import compute_losses
from sg_detr_jax.models import precision

# Batch entries the model consumes in floating point (cast to the compute dtype).
_FLOAT_INPUTS = ("video", "text")

# Jitted steps by (kind, config, steps per epoch, mesh). A step is a pure function of those: the
# model graph is built from the config (`loop.build`), tx and schedule from config.optim and the
# steps per epoch. Building the same step twice in one process (evaluation after training, a
# resumed or repeated run, a notebook) so reuses the compiled executable instead of compiling the
# model again (~1 min on a CPU). (GraphDefs holding a ConfigDict are not hashable themselves.)
_STEPS: dict = {}


def _cached(kind: str, graphdef, config, extra, mesh, make):
  del graphdef  # determined by the config
  key = (kind, config.to_json(), extra, mesh)
  if key not in _STEPS:
    _STEPS[key] = make()
  return _STEPS[key]


def init_state(model: nnx.Module, tx: optax.GradientTransformation):
  """(graphdef, TrainState) of a freshly built model."""
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, {"params": params, "opt_state": tx.init(params),
                    "step": jnp.zeros((), jnp.int32)}


def _model_inputs(batch, dtype):
  return {k: (v.astype(dtype) if k in _FLOAT_INPUTS else v) for k, v in batch.items()}


def make_train_step(graphdef, config, tx, schedule, mesh=None):
  """train_step(state, batch, base_key) -> (state, metrics); the key is folded with the step.

  With a `mesh`, the step is jitted with the state and key replicated and the batch split over
  `config.mesh.data_axis` (inputs must already carry those shardings, see `sharding.shard_batch`);
  outputs (state, metrics) are replicated.
  """
  return _cached("train", graphdef, config, getattr(schedule, "steps_per_epoch", id(schedule)),
                 mesh, lambda: _make_train_step(graphdef, config, tx, schedule, mesh))


def _make_train_step(graphdef, config, tx, schedule, mesh):
  dtype = precision.compute_dtype(config.model.dtype)

  def loss_fn(params, batch, key):
    model = nnx.merge(graphdef, precision.cast_floating(params, dtype))
    out = model(_model_inputs(batch, dtype), key=key, train=True)
    total, terms = compute_losses(out, batch, config, mesh)
    # Not a loss: the collab group the official code would build for this batch (max_b |P_b|).
    stats = {"collab_positives": out["co_positives"]} if "co_positives" in out else {}
    return total, (terms, stats)

  def train_step(state, batch, base_key):
    key = jax.random.fold_in(base_key, state["step"])
    (total, (terms, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], batch, key)
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
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

  if mesh is None:
    return jax.jit(train_step, donate_argnums=(0,))
  rep = sharding.replicated(mesh)
  return jax.jit(train_step, donate_argnums=(0,),
                 in_shardings=(rep, sharding.batch_sharding(mesh, config.mesh.data_axis), rep),
                 out_shardings=(rep, rep))


def make_predict_step(graphdef, config, mesh=None):
  """predict_step(params, batch) -> the inference outputs dict (f32).

  With a `mesh`, params are replicated and the batch (numpy rows are placed automatically) is split
  over `config.mesh.data_axis`.
  """
  return _cached("predict", graphdef, config, None, mesh,
                 lambda: _make_predict_step(graphdef, config, mesh))


def _make_predict_step(graphdef, config, mesh):
  dtype = precision.compute_dtype(config.model.dtype)

  def predict_step(params, batch):
    model = nnx.merge(graphdef, precision.cast_floating(params, dtype))
    out = model(_model_inputs(batch, dtype), train=False)
    return precision.cast_floating(out, jnp.float32)

  if mesh is None:
    return jax.jit(predict_step)
  return jax.jit(predict_step, in_shardings=(
      sharding.replicated(mesh), sharding.batch_sharding(mesh, config.mesh.data_axis)))
