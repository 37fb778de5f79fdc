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

from sg_detr_jax import jsonl

SCORES = "scores.json"


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

  def restore(self, step: int, abstract_state) -> tuple[dict, dict]:
    """(train state shaped like `abstract_state`, iterator state) of `step`."""
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
    got = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return got["state"], got["data"]

  def restore_params(self, step: int, abstract_state):
    """Only the model parameters of `step` (evaluation, fine-tuning initialisation)."""
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:
      got = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))
    except (ValueError, KeyError) as e:
      raise ValueError(f"checkpoint {step} in {self.directory} does not fit this model config "
                       f"(was it trained with another one?): {e}") from e
    return got["state"]["params"]

  def close(self):
    self.manager.close()
