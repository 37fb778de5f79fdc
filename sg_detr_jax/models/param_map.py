"""Declarative correspondence between our parameter leaves and the official PyTorch state_dict.

Each rule is (our leaf path, official key, transform). Transforms:
  "copy"   same layout (LayerNorm scale/bias <- weight/bias, biases, scalars, vectors);
  "linear" torch Linear weight [out, in] <-> our kernel [in, out] (transpose);
  "conv"   torch Conv1d weight [out, in / groups, k] <-> our kernel [k, in / groups, out].
The porting tools (checkpoint conversion both ways) consume these rules; tests check that, per
covered module, every official key and every one of our leaves appears exactly once with agreeing
shapes.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np
from flax import nnx

Rule = tuple[str, str, str]


def _linear(ours: str, theirs: str) -> Iterator[Rule]:
  yield f"{ours}.kernel", f"{theirs}.weight", "linear"
  yield f"{ours}.bias", f"{theirs}.bias", "copy"


def _norm(ours: str, theirs: str) -> Iterator[Rule]:
  yield f"{ours}.scale", f"{theirs}.weight", "copy"
  yield f"{ours}.bias", f"{theirs}.bias", "copy"


def _ffn(ours: str, theirs: str) -> Iterator[Rule]:
  yield from _linear(f"{ours}.linear1", f"{theirs}.mapping.0")
  yield f"{ours}.act.weight", f"{theirs}.mapping.1.weight", "copy"
  yield from _linear(f"{ours}.linear2", f"{theirs}.mapping.3")


def input_projection(ours: str, theirs: str) -> Iterator[Rule]:
  yield from _norm(f"{ours}.norm1", f"{theirs}.linear_mapper.0.mapper.0")
  yield from _linear(f"{ours}.linear1", f"{theirs}.linear_mapper.0.mapper.2")
  yield from _norm(f"{ours}.norm2", f"{theirs}.linear_mapper.1.mapper.0")
  yield from _linear(f"{ours}.linear2", f"{theirs}.linear_mapper.1.mapper.2")


def local_saliency(ours: str, theirs: str, num_layers: int) -> Iterator[Rule]:
  pool = f"{theirs}.sentence_pooling"
  yield f"{ours}.cls_q", f"{pool}.cls_q", "copy"
  for i in range(num_layers):
    yield from _norm(f"{ours}.layers.{i}.attn_norm", f"{pool}.layers.{i}.attn_norm")
    yield from _linear(f"{ours}.layers.{i}.out_proj", f"{pool}.layers.{i}.attn.out_proj")
    yield from _norm(f"{ours}.layers.{i}.ffn_norm", f"{pool}.layers.{i}.ffn_norm")
    yield from _ffn(f"{ours}.layers.{i}.ffn", f"{pool}.layers.{i}.ffn")
  yield from _norm(f"{ours}.norm", f"{pool}.norm")
  # theta (log-scale, init 3.0) and beta (shift, init 0) of eq. 2.
  yield f"{ours}.temp", f"{theirs}.temp", "copy"
  yield f"{ours}.a_param", f"{theirs}.a_param", "copy"


def sgca(ours: str, theirs: str, num_layers: int, qkv_proj: bool = False) -> Iterator[Rule]:
  enc = f"{theirs}.t2v_encoder"
  for i in range(num_layers):
    if qkv_proj:  # ablation only (A3): no official counterpart, named in the same scheme
      for name in ("q_proj", "k_proj", "v_proj"):
        yield from _linear(f"{ours}.layers.{i}.{name}", f"{enc}.layers.{i}.self_attn.{name}")
    yield from _linear(f"{ours}.layers.{i}.out_proj", f"{enc}.layers.{i}.self_attn.out_proj")
    yield from _ffn(f"{ours}.layers.{i}.ffn", f"{enc}.layers.{i}.ffn")
    yield from _norm(f"{ours}.layers.{i}.norm1", f"{enc}.layers.{i}.norm1")
    yield from _norm(f"{ours}.layers.{i}.norm2", f"{enc}.layers.{i}.norm2")
  yield from _norm(f"{ours}.norm", f"{enc}.norm")


def encoder(ours: str, theirs: str, num_layers: int) -> Iterator[Rule]:
  for i in range(num_layers):
    o, t = f"{ours}.layers.{i}", f"{theirs}.layers.{i}"
    yield f"{o}.in_proj.kernel", f"{t}.self_attn.in_proj_weight", "linear"
    yield f"{o}.in_proj.bias", f"{t}.self_attn.in_proj_bias", "copy"
    yield from _linear(f"{o}.out_proj", f"{t}.self_attn.out_proj")
    yield from _ffn(f"{o}.ffn", f"{t}.ffn")
    yield from _norm(f"{o}.norm1", f"{t}.norm1")
    yield from _norm(f"{o}.norm2", f"{t}.norm2")


def _dws(ours: str, theirs: str) -> Iterator[Rule]:
  yield f"{ours}.depthwise.kernel", f"{theirs}.depthwise.weight", "conv"
  yield f"{ours}.pointwise.kernel", f"{theirs}.pointwise.weight", "conv"


def fpn(ours: str, theirs: str) -> Iterator[Rule]:
  # Index of (conv1, norm1, conv2, norm2) inside each official nn.Sequential branch.
  layout = {"upscale": (1, 2, 4, 5), "level0": (0, 1, 3, 4), "level1": (0, 1, 3, 4),
            "level2": (1, 2, 4, 5)}
  for branch, (c1, n1, c2, n2) in layout.items():
    yield from _dws(f"{ours}.{branch}.conv1", f"{theirs}.{branch}.{c1}")
    yield from _norm(f"{ours}.{branch}.norm1", f"{theirs}.{branch}.{n1}.norm")
    yield from _dws(f"{ours}.{branch}.conv2", f"{theirs}.{branch}.{c2}")
    yield from _norm(f"{ours}.{branch}.norm2", f"{theirs}.{branch}.{n2}.norm")


def atss_head(ours: str, theirs: str, num_convs: int, num_levels: int) -> Iterator[Rule]:
  for stem, head in (("cls_stem", "classification_head"), ("reg_stem", "regression_head")):
    for j in range(num_convs):
      yield f"{ours}.{stem}.convs.{j}.kernel", f"{theirs}.{head}.stem.layers.{4 * j + 1}.weight", "conv"
      yield from _norm(f"{ours}.{stem}.norms.{j}", f"{theirs}.{head}.stem.layers.{4 * j + 2}.norm")
  for ours_name, official in (("cls_logits", "classification_head.cls_logits"),
                              ("bbox_reg", "regression_head.bbox_reg"),
                              ("bbox_ctrness", "regression_head.bbox_ctrness")):
    yield f"{ours}.{ours_name}.kernel", f"{theirs}.{official}.layers.1.weight", "conv"
    yield f"{ours}.{ours_name}.bias", f"{theirs}.{official}.layers.1.bias", "copy"
  for i in range(num_levels):
    yield f"{ours}.scales.{i}", f"{theirs}.regression_head.scales.{i}.scale", "copy"


def _mlp(ours: str, theirs: str, num_layers: int) -> Iterator[Rule]:
  for i in range(num_layers):
    yield from _linear(f"{ours}.layers.{i}", f"{theirs}.linear_mapper.{2 * i}")


def query_selector(ours: str, theirs: str) -> Iterator[Rule]:
  yield from _linear(f"{ours}.enc_output", f"{theirs}.enc_output")
  yield from _norm(f"{ours}.enc_output_norm", f"{theirs}.enc_output_norm")
  yield from _mlp(f"{ours}.span_embed", f"{theirs}.enc_out_span_embed", 3)
  yield from _linear(f"{ours}.class_embed", f"{theirs}.enc_out_class_embed")
  yield from _linear(f"{ours}.iou_embed", f"{theirs}.enc_out_iou_embed")


def decoder(ours: str, theirs: str, num_layers: int, iou_head: bool) -> Iterator[Rule]:
  for i in range(num_layers):
    o, t = f"{ours}.layers.{i}", f"{theirs}.layers.{i}"
    for name in ("query_content_proj", "query_pos_proj", "key_content_proj", "key_pos_proj",
                 "value_proj"):
      yield from _linear(f"{o}.self_attention.{name}", f"{t}.self_attention.{name}")
    yield from _linear(f"{o}.self_attention.out_proj", f"{t}.self_attention.self_attn.out_proj")
    yield from _norm(f"{o}.self_attention.norm1", f"{t}.self_attention.norm1")
    for name in ("ca_qcontent_proj", "ca_qpos_sine_proj", "ca_kcontent_proj", "ca_kpos_proj",
                 "ca_value_proj"):
      yield from _linear(f"{o}.{name}", f"{t}.{name}")
    yield from _linear(f"{o}.ca_out_proj", f"{t}.cross_attn.out_proj")
    yield from _ffn(f"{o}.ffn", f"{t}.ffn")
    yield from _norm(f"{o}.norm2", f"{t}.norm2")
    yield from _norm(f"{o}.norm3", f"{t}.norm3")
  yield from _mlp(f"{ours}.query_scale", f"{theirs}.query_scale", 2)
  if iou_head:
    yield from _mlp(f"{ours}.quality_score_embed", f"{theirs}.quality_score_embed", 3)
  yield from _mlp(f"{ours}.ref_point_head", f"{theirs}.ref_point_head", 2)
  yield from _mlp(f"{ours}.ref_anchor_head", f"{theirs}.ref_anchor_head", 2)
  yield from _mlp(f"{ours}.span_embed", f"{theirs}.span_embed", 3)
  yield from _norm(f"{ours}.norm", f"{theirs}.norm")


def detr_head(ours: str, theirs: str, m) -> Iterator[Rule]:
  if m.collab:
    yield from _linear(f"{ours}.co_mapper_linear", f"{theirs}.co_mapper.0")
    yield from _norm(f"{ours}.co_mapper_norm", f"{theirs}.co_mapper.1")
  if m.denoise:
    yield f"{ours}.dn_label_enc", f"{theirs}.dn_label_enc.weight", "copy"
  yield from decoder(f"{ours}.decoder", f"{theirs}.decoder", m.decoder_layers, m.iou_head)
  yield from _mlp(f"{ours}.span_embed", f"{theirs}.span_embed", 3)
  yield from _linear(f"{ours}.class_embed", f"{theirs}.class_embed")


def token_encoder(ours: str, theirs: str, token: str, encoder_name: str,
                  num_layers: int) -> Iterator[Rule]:
  """Sentence / moment encoder: learned token and position + post-norm encoder layers."""
  yield f"{ours}.{token}_rep_token", f"{theirs}.{token}_rep_token", "copy"
  yield f"{ours}.{token}_rep_pos", f"{theirs}.{token}_rep_pos", "copy"
  yield from encoder(f"{ours}.encoder", f"{theirs}.{encoder_name}", num_layers)


def sg_detr(m) -> Iterator[Rule]:
  """Every parameter of `models.sg_detr.SGDETR` built from `config.model` = m."""
  yield from input_projection("input_vid_proj", "input_vid_proj")
  yield from input_projection("input_txt_proj", "input_txt_proj")
  yield "modality_embeddings", "modality_embeddings.weight", "copy"
  yield ("txt_position_embed.position_embeddings",
         "txt_position_embed.position_embeddings.weight", "copy")
  yield from _norm("txt_position_embed.norm", "txt_position_embed.norm")
  yield from local_saliency("local_saliency_head", "local_saliency_head", m.pooling_layers)
  yield from sgca("txt2vis_sal_encoder", "txt2vis_sal_encoder", m.sgca_layers, m.sgca_qkv_proj)
  yield from encoder("det_encoder", "det_encoder.encoder", m.encoder_layers)
  if m.global_saliency:
    yield from _linear("global_saliency_head", "global_saliency_head")
  yield from fpn("fpn", "fpn")
  yield from query_selector("query_selector", "query_selector")
  yield from detr_head("main_det_head", "main_det_head", m)
  if m.atss or m.collab:
    yield from atss_head("aux_det_head", "aux_det_head", m.atss_convs, len(m.fpn_strides))
  yield from token_encoder("sent_encoder", "sent_encoder", "sent", "sent_cls_encoder",
                           m.sentence_layers)
  yield from token_encoder("moment_encoder", "moment_encoder", "moment", "mcls_encoder",
                           m.moment_layers)


def to_official(value: np.ndarray, transform: str) -> np.ndarray:
  """Our leaf -> the official tensor layout."""
  if transform == "linear":
    return np.asarray(value).T
  if transform == "conv":
    return np.asarray(value).transpose(2, 1, 0)
  return np.asarray(value)


def from_official(value: np.ndarray, transform: str) -> np.ndarray:
  """The official tensor layout -> our leaf: both transforms are their own inverse."""
  return to_official(value, transform)


def official_shape(shape: tuple[int, ...], transform: str) -> tuple[int, ...]:
  """Shape our leaf takes in the official layout."""
  if transform == "linear":
    return tuple(reversed(shape))
  if transform == "conv":
    return (shape[2], shape[1], shape[0])
  return tuple(shape)


def dotted(path) -> str:
  """"a.b.0.c" of a jax key path (dict keys, attribute names, sequence indices)."""
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def flat_params_of_state(params) -> dict[str, np.ndarray]:
  """{dotted path: array} of an nnx.State of Params (e.g. a train state's "params")."""
  pure = nnx.to_pure_dict(params)
  return {dotted(path): v for path, v in jax.tree_util.tree_flatten_with_path(pure)[0]}


def flat_params(module) -> dict[str, np.ndarray]:
  """{dotted path: array} of every nnx.Param leaf of a module."""
  return flat_params_of_state(nnx.state(module, nnx.Param))
