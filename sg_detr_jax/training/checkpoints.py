"""orbax checkpoints that keep the latest step (for resuming) AND the best ones (for evaluation).

orbax's `max_to_keep` + `best_fn` deletes the latest checkpoint when it is not among the best, so
retention is done here explicitly: every save records the step's validation metric (if any) in
`<dir>/scores.json`, then every step that is neither the latest nor among the `keep_best` best is
deleted. Each checkpoint holds the train state, the input iterator state and the config.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp
from etils import epath

from sg_detr_jax import jsonl

SCORES = "scores.json"


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
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.keep_best = keep_best
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "data", "config"),
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True))
    path = os.path.join(self.directory, SCORES)
    self.scores: dict[str, float] = {}
    if os.path.isfile(path):
      with open(path) as f:
        self.scores = json.load(f)

  # -- queries -------------------------------------------------------------------------------
  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def best(self) -> int | None:
    scored = [(v, int(k)) for k, v in self.scores.items() if int(k) in self.steps()]
    return max(scored)[1] if scored else None

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
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        config=ocp.args.JsonSave(json.loads(config.to_json()))), force=True)
    self.manager.wait_until_finished()
    if score is not None:
      self.scores[str(step)] = float(score)
    self._retain()

  def _retain(self):
    steps = self.steps()
    keep = {steps[-1]} if steps else set()
    ranked = sorted(((v, int(k)) for k, v in self.scores.items() if int(k) in steps), reverse=True)
    keep |= {s for _, s in ranked[:self.keep_best]}
    for s in steps:
      if s not in keep:
        self.manager.delete(s)
    self.scores = {k: v for k, v in self.scores.items() if int(k) in keep}
    jsonl.write_json(os.path.join(self.directory, SCORES), self.scores)

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
    self.check_fits(step, abstract_state)
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
    got = self._restore(step, ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return got["state"], got["data"]

  def restore_params(self, step: int, abstract_state):
    """Only the model parameters of `step` (evaluation, fine-tuning initialisation)."""
    self.check_fits(step, abstract_state, params_only=True)
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
    got = self._restore(step, ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return got["state"]["params"]

  def close(self):
    self.manager.close()
