"""orbax checkpoints that keep the latest step (for resuming) AND the best ones (for evaluation).

Retention is orbax's own `preservation_policy`: the latest step (`LatestN(1)`) plus the
`keep_best` steps with the highest validation score (`BestN`). A step saved with a score carries
it as orbax's per-step `metrics` ({"score": float}); a step saved without one (no evaluation that
epoch) is not ranked: it is kept while it is the latest (or while there are no more than
`keep_best` steps) and is never the best. Each checkpoint holds the train state, the input
iterator state and the config.

Saves are asynchronous (orbax's default): `save` returns once the arrays are copied to host
memory, the files are written in a background thread and a step's directory appears only when it
is complete (written under a temporary name, then renamed), so a killed run leaves its previous
checkpoints intact. Reads wait for an unfinished save of this manager, and `close` waits for it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

# The `metrics` orbax stores with a scored step; `_score` reads it back.
_SCORE = "score"


def _score(metrics: dict) -> float:
  return metrics[_SCORE]


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: unreadable / truncated, or made for another model config."""


def _path_name(path) -> str:
  """A pytree path as "params/input_vid_proj/linear1/kernel", whatever the key types."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """{path: shape} of a state or of a checkpoint's metadata tree (which names an nnx Variable's
  array ".../value"; the live state does not)."""
  leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
  names = (_path_name(p) for p, _ in leaves)
  return {n[:-len("/value")] if n.endswith("/value") else n: tuple(x.shape)
          for n, (_, x) in zip(names, leaves)}


class Checkpoints:
  """Save / restore / select checkpoints under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, keep_best: int = 1):
    """`keep_best`: how many of the best scored steps are kept besides the latest (saving only;
    a reader's value does not matter)."""
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    policies = ocp.checkpoint_managers
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "data", "config"),
        options=ocp.CheckpointManagerOptions(
            create=True,
            # best_fn makes orbax write each save's metrics and rank steps in best_step();
            # which steps survive is decided by the preservation policy alone.
            best_fn=_score, best_mode="max",
            preservation_policy=policies.AnyPreservationPolicy([
                policies.LatestN(n=1),
                # Ascending by score, the last `n` kept: the highest scores.
                policies.BestN(get_metric_fn=_score, reverse=False, n=keep_best,
                               keep_checkpoints_without_metrics=False)]),
            enable_async_checkpointing=True))

  # -- queries -------------------------------------------------------------------------------
  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest(self) -> int | None:
    return self.manager.latest_step()

  def best(self) -> int | None:
    """The step with the highest validation score; None when no step was saved with one."""
    return self.manager.best_step()  # ranks only the steps saved with metrics

  def resolve(self, which: str) -> int:
    """'latest' | 'best' | a step number -> an existing step (clear error otherwise)."""
    if not self.steps():
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    if which == "latest":
      return self.latest()
    if which == "best":
      step = self.best()
      if step is None:
        raise FileNotFoundError(f"no evaluated checkpoint in {self.directory}; use 'latest'")
      return step
    if not str(which).isdigit() or int(which) not in self.steps():
      raise FileNotFoundError(f"checkpoint {which!r} not in {self.directory}: {self.steps()}")
    return int(which)

  # -- save / restore ------------------------------------------------------------------------
  def save(self, step: int, state, data_state: dict, config, score: float | None = None):
    """Starts an asynchronous save of `step` (returns once the arrays are on the host; the
    caller may donate or overwrite `state` right away). `score`: the step's validation metric
    (higher is better), None for a step saved without evaluation."""
    metrics = None if score is None else {_SCORE: float(score)}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        config=ocp.args.JsonSave(json.loads(config.to_json()))), metrics=metrics, force=True)

  def wait(self) -> None:
    """Blocks until an unfinished save of this manager is on disk (and old steps deleted)."""
    self.manager.wait_until_finished()

  def check_fits(self, step: int, abstract_state, params_only: bool = False) -> None:
    """Raises CheckpointError listing every missing, unexpected or differently shaped array of
    checkpoint `step` against `abstract_state` (before orbax fails somewhere inside a restore)."""
    path = os.path.join(self.directory, str(step), "state")
    try:
      # The item handler reads the tree metadata directly (a Checkpointer would also look for a
      # step-level metadata file inside the item folder and log a warning on every restore).
      saved = _shapes(ocp.StandardCheckpointHandler().metadata(epath.Path(path)))
    except Exception as e:  # orbax raises many types for a damaged directory
      raise CheckpointError(f"{path}: unreadable or truncated checkpoint "
                            f"({type(e).__name__}: {e})") from None
    if not saved:
      raise CheckpointError(f"{path}: unreadable or truncated checkpoint (its metadata lists no "
                            "arrays)")
    want = _shapes(abstract_state)
    if params_only:
      saved = {k: v for k, v in saved.items() if k.startswith("params/")}
      want = {k: v for k, v in want.items() if k.startswith("params/")}
    problems = [f"missing in the checkpoint: {k} {want[k]}" for k in sorted(want.keys() - saved)]
    problems += [f"not in this model: {k} {saved[k]}" for k in sorted(saved.keys() - want)]
    problems += [f"shape {saved[k]} in the checkpoint, {want[k]} in this model: {k}"
                 for k in sorted(want.keys() & saved.keys()) if want[k] != saved[k]]
    if problems:
      shown = "\n  ".join(problems[:25])
      more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
      raise CheckpointError(f"checkpoint {step} in {self.directory} does not fit this config "
                            f"(trained with another one?): {len(problems)} problems:\n  "
                            f"{shown}{more}")

  def _restore(self, step: int, args) -> dict:
    try:
      return self.manager.restore(step, args=args)
    except Exception as e:  # a damaged directory fails deep inside orbax / tensorstore
      raise CheckpointError(f"{os.path.join(self.directory, str(step))}: unreadable or truncated "
                            f"checkpoint ({type(e).__name__}: {e})") from None

  def restore(self, step: int, abstract_state) -> tuple[dict, dict]:
    """(train state shaped like `abstract_state`, iterator state) of `step`."""
    self.wait()  # a step this manager is still writing
    self.check_fits(step, abstract_state)
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
    got = self._restore(step, ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return got["state"], got["data"]

  def restore_params(self, step: int, params):
    """Only the model parameters of `step`, shaped and placed like `params` (the model's
    nnx.State of Params, arrays or abstract; abstract leaves without a sharding land on the first
    local device). The optimizer state is not read."""
    self.wait()
    target = {"params": jax.tree_util.tree_map(_restore_target, params)}
    self.check_fits(step, target, params_only=True)
    got = self._restore(step, ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))
    return got["state"]["params"]

  def close(self):
    """Waits for an unfinished save, then releases the manager."""
    self.manager.close()


def _restore_target(x) -> jax.ShapeDtypeStruct:
  x = ocp.utils.to_shape_dtype_struct(x)
  if getattr(x, "sharding", None) is None:  # orbax would restore a numpy array
    x = jax.ShapeDtypeStruct(x.shape, x.dtype,
                             sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  return x


def load_params(workdir: str, params, which: str = "best", *,
                best_falls_back: bool = True) -> tuple[int, Any]:
  """(step, model parameters) of checkpoint `which` of `workdir`: the one way to load a trained
  model (evaluation, the Predictor, fine-tuning initialisation).

  Args:
    workdir: a launch.train workdir (its checkpoints are in `<workdir>/checkpoints`).
    params: the model's nnx.State of Params (arrays or abstract, e.g. `state["params"]` of
      `loop.build`); the result has its tree, shapes, dtypes and placement.
    which: 'best' | 'latest' | a step number.
    best_falls_back: 'best' means 'latest' when no step was saved with a validation score (a
      split without labels); False raises FileNotFoundError instead.

  Raises:
    FileNotFoundError: no such checkpoint.
    CheckpointError: the checkpoint is unreadable or does not fit `params` (every differing
      array listed).
  """
  ckpts = Checkpoints(workdir)
  try:
    if which == "best" and best_falls_back and ckpts.best() is None:
      which = "latest"
    step = ckpts.resolve(str(which))
    return step, ckpts.restore_params(step, params)
  finally:
    ckpts.close()
