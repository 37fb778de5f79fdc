"""Official SG-DETR state_dict <-> our nnx parameters, driven by the declarative table of
`models.param_map.sg_detr` (Linear weights transposed, Conv1d kernels permuted, LayerNorm weight ->
scale, PReLU slopes / scalars / embeddings copied; fused attention in-projections keep their fused
[3d, d] layout because our encoder projects q, k, v with one matmul too).

Every official key must be consumed and every leaf of ours filled; otherwise the error lists the
unknown keys, the missing keys and the shape mismatches, all at once.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from sg_detr_jax.models import param_map


def official_buffers(m) -> dict[str, np.ndarray]:
  """The official model's non-parameter tensors: the ATSS cell anchors, one [1, 2] per FPN level.

  Cell anchor of (stride s, size a) = [s/2 - (a - 1)/2, s/2 + (a - 1)/2] (float64), which is the
  first anchor of the level in `models.atss.make_anchors`.
  """
  if not (m.atss or m.collab):
    return {}
  out = {}
  for i, (s, a) in enumerate(zip(m.fpn_strides, m.anchor_sizes)):
    out[f"aux_det_head.anchor_generator.cell_anchors.{i}"] = np.array(
        [[s / 2 - (a - 1) / 2, s / 2 + (a - 1) / 2]], np.float64)
  return out


def _leaf_paths(params) -> dict[str, tuple]:
  """{dotted path: key path tuple} of the pure-dict form of an nnx params State."""
  pure = nnx.to_pure_dict(params)
  return {param_map.dotted(path): path
          for path, _ in jax.tree_util.tree_flatten_with_path(pure)[0]}


class ConversionError(ValueError):
  """A state_dict that does not fit the model; the message lists every problem."""


def _report(problems: dict[str, list[str]], where: str) -> None:
  lines = []
  for title, items in problems.items():
    if items:
      shown = items[:40] + ([f"... and {len(items) - 40} more"] if len(items) > 40 else [])
      lines.append(f"{title} ({len(items)}):\n  " + "\n  ".join(shown))
  if lines:
    raise ConversionError(f"{where} does not match the model config:\n" + "\n".join(lines))


def from_official(state_dict: dict[str, np.ndarray], model_cfg, params, where: str = "state_dict"):
  """Returns `params` (an nnx.State of Params, used as the template) filled from `state_dict`.

  Raises:
    ConversionError: listing unknown keys, missing keys, shape mismatches and buffers that disagree
      with the config (e.g. other anchor sizes).
  """
  return assign(state_dict, list(param_map.sg_detr(model_cfg)), params,
                official_buffers(model_cfg), where)


def assign(state_dict: dict[str, np.ndarray], rules, params, buffers=None,
           where: str = "state_dict"):
  """`params` filled from `state_dict` by `rules` ((ours, theirs, transform) triples).

  Also used on single modules (the per-layer parity tests) with that module's rules.
  """
  buffers = buffers or {}
  paths = _leaf_paths(params)
  template = {p: np.asarray(v) for p, v in param_map.flat_params_of_state(params).items()}
  used = {theirs for _, theirs, _ in rules} | set(buffers)
  problems = {"unknown official keys": sorted(set(state_dict) - used),
              "missing official keys": sorted(used - set(state_dict)),
              "shape mismatches": [], "buffers that disagree with the config": [],
              "leaves of the model without a rule": sorted(set(paths) - {o for o, _, _ in rules})}
  values = {}
  for ours, theirs, transform in rules:
    if theirs not in state_dict:
      continue
    want = param_map.official_shape(template[ours].shape, transform)
    got = tuple(np.shape(state_dict[theirs]))
    if got != want:
      problems["shape mismatches"].append(f"{theirs}: checkpoint {got}, model expects {want}")
      continue
    values[ours] = param_map.from_official(np.asarray(state_dict[theirs]), transform).astype(
        template[ours].dtype)
  for key, expected in buffers.items():
    if key in state_dict and not np.allclose(np.asarray(state_dict[key], np.float64), expected):
      problems["buffers that disagree with the config"].append(
          f"{key}: checkpoint {np.asarray(state_dict[key]).tolist()}, config gives "
          f"{expected.tolist()} (check model.fpn_strides / model.anchor_sizes)")
  _report(problems, where)
  pure = nnx.to_pure_dict(params)
  flat = {path: values[dotted] for dotted, path in paths.items()}
  leaves = jax.tree_util.tree_flatten_with_path(pure)[0]
  new_pure = jax.tree_util.tree_unflatten(
      jax.tree_util.tree_structure(pure), [flat[path] for path, _ in leaves])
  out = jax.tree_util.tree_map(lambda x: x, params)  # a copy to fill, same State structure
  nnx.replace_by_pure_dict(out, new_pure)
  return out


def to_official(params, model_cfg) -> dict[str, np.ndarray]:
  """{official key: array} in the official layouts and dtype float32, buffers included."""
  flat = param_map.flat_params_of_state(params)
  out = {}
  for ours, theirs, transform in param_map.sg_detr(model_cfg):
    # np.array, not ascontiguousarray: that one turns 0-d scalars (temp, a_param) into [1].
    out[theirs] = np.array(param_map.to_official(np.asarray(flat[ours], np.float32), transform),
                           order="C")
  out.update(official_buffers(model_cfg))
  return out
