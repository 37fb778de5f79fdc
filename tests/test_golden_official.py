"""Golden tests against the official PyTorch SG-DETR (../shared/reference/official_golden).

The official weights (`weights.pt`, width 64) go through the porting user's path
(`launch.convert_torch` -> an orbax workdir -> restored params). Then, at the tolerances of the
golden README:
  * the eval-mode forward on `inputs.npz`: every head and every intermediate that our stages expose
    (sown as `nnx.Intermediate`), atol 1e-5; anchors exactly;
  * the eval-mode training loss on `loss_batch.npz` (no dropout, no collab group): every official
    term at relative 1e-5 and the total at 1e-6, for the main batch and the FFTT variant;
  * d(total)/d(params): whole vector relative L2 1e-5, global norm 1e-5, per tensor 1e-4 (the
    decoder key-projection biases, whose exact gradient is 0, at atol 1e-7);
  * one AdamW step at the official warm-up lr: atol 5e-7, parameters without a gradient unchanged.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import SHARED

GOLDEN = os.path.join(SHARED, "reference", "official_golden")
OVERRIDES = ["--config.model.d_model=64", "--config.model.ffn_dim=256",
             "--config.model.num_heads=8",
             # eval mode: the golden losses and gradients were taken with model.eval()
             "--config.model.dropout=0.0", "--config.model.drop_path=0.0",
             "--config.model.input_dropout=0.0"]
# Decoder key-projection biases: exact gradient 0 (softmax is shift-invariant per query), the
# stored official values are round-off (README).
ZERO_GRAD_BIASES = ("key_content_proj.bias", "key_pos_proj.bias", "ca_kcontent_proj.bias",
                    "ca_kpos_proj.bias")


def _load(name):
  path = os.path.join(GOLDEN, name)
  if not os.path.isfile(path):
    pytest.fail(f"golden file missing (set SG_DETR_SHARED to the shared/ folder): {path}")
  if name.endswith(".json"):
    with open(path) as f:
      return json.load(f)
  return dict(np.load(path))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
  """(config, graphdef, params) of the converted official weights, restored from a workdir."""
  pytest.importorskip("torch")
  from launch import config_flags
  from launch.convert_torch import convert
  from sg_detr_jax.training.checkpoints import Checkpoints
  from sg_detr_jax.training.loop import build

  config = config_flags.load("configs/qvhighlights.py", OVERRIDES)
  workdir = str(tmp_path_factory.mktemp("from_torch"))
  n = convert(os.path.join(GOLDEN, "weights.pt"), config, workdir)
  assert n == _load("model.json")["weights"]["parameters"] == 912_038
  graphdef, state, _, _ = build(config, 1)
  ckpts = Checkpoints(workdir)
  params = ckpts.restore_params(ckpts.resolve("latest"), state)
  ckpts.close()
  return config, graphdef, params


def _check_close(name, ours, theirs, atol):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs official {theirs.shape}"
  diff = float(np.abs(ours - theirs).max())
  assert diff <= atol, f"{name}: max |diff| {diff:.2e} > {atol}"
  return diff


def test_forward_equals_official(golden):
  from sg_detr_jax.models.fpn import STRIDES
  from sg_detr_jax.porting.official_names import head_outputs

  config, graphdef, params = golden
  inputs, fw = _load("inputs.npz"), _load("forward.npz")
  model = nnx.merge(graphdef, params)
  out, inter = nnx.capture(model, nnx.Intermediate)(
      {"video": jnp.asarray(inputs["src_vid"]), "video_mask": jnp.asarray(inputs["src_vid_mask"] > 0),
       "text": jnp.asarray(inputs["src_txt"]), "text_mask": jnp.asarray(inputs["src_txt_mask"] > 0)})
  inter = nnx.to_pure_dict(inter)
  sown = lambda *path: _sown(inter, path)

  lv = inputs["src_vid"].shape[1]
  level_sizes = [int(round(lv / s)) for s in STRIDES]
  official = head_outputs(fw, level_sizes)
  assert np.array_equal(np.asarray(out["anchors"]), official.pop("anchors"))
  diffs = {k: _check_close(k, out[k], v, 1e-5) for k, v in official.items()}

  seq_first = lambda x: np.swapaxes(x, 0, 1)  # official [L, B, D] -> [B, L, D]
  sgca = seq_first(fw["inter/sgca_out_LvLt_B_D"])
  theirs = {
      "vid_proj": fw["inter/vid_proj"], "txt_proj": fw["inter/txt_proj"],
      "sent_token": fw["inter/sent_token"],
      "sgca_video": sgca[:, :lv], "sgca_text": sgca[:, lv:],
      "det_memory": seq_first(fw["inter/det_memory_Lv_B_D"]),
      "vid_pos": seq_first(fw["inter/vid_pos_Lv_B_D"]),
      "memory_amplified": fw["x/memory_amplified"],
      "qsel_content": fw["inter/qsel_query_embs"], "qsel_reference": fw["inter/qsel_ref_unsig"],
      "decoder_hs": fw["inter/decoder_hs"], "decoder_refs": fw["inter/decoder_refs"],
      "decoder_iou": fw["inter/decoder_iou_logits"][..., 0],
      "detr_offset": fw["detr/offset"],
      "enc_ref_unsig": fw["enc/ref_unsig"],
  }
  ours = {
      "vid_proj": sown("vid_proj"), "txt_proj": sown("txt_proj"),
      "sent_token": sown("sent_token"),
      "sgca_video": sown("sgca_video"), "sgca_text": sown("txt2vis_sal_encoder", "text_out"),
      "det_memory": sown("det_memory"), "vid_pos": sown("vid_pos"),
      "memory_amplified": sown("memory_amplified"),
      "qsel_content": sown("qsel_content"), "qsel_reference": sown("qsel_reference"),
      "decoder_hs": sown("main_det_head", "decoder_hs"),
      "decoder_refs": sown("main_det_head", "decoder_refs"),
      "decoder_iou": out["pred_iou"],
      "detr_offset": np.asarray(out["pred_spans"]) - sown("main_det_head", "decoder_refs"),
      "enc_ref_unsig": sown("qsel_reference"),
  }
  for k in theirs:
    diffs[k] = _check_close(k, ours[k], theirs[k], 1e-5)
  for k, level in enumerate(sown("fpn_levels")):
    diffs[f"fpn_l{k}"] = _check_close(f"fpn_l{k}", level, fw[f"inter/fpn_l{k}"], 1e-5)
  print("max |diff| per output:", {k: f"{v:.1e}" for k, v in diffs.items()})


def _sown(inter, path):
  """The first value sown under `path` (sow keeps a tuple of every call's value)."""
  node = inter
  for p in path:
    node = node[p]
  value = node[0] if isinstance(node, (tuple, list)) else node
  if isinstance(value, dict):  # to_pure_dict turns a tuple of arrays into {0: ..., 1: ...}
    value = value[0]
  if isinstance(value, (tuple, list)) or (isinstance(value, dict)):
    return value
  return np.asarray(value)


def _loss_batch(lb, vids, max_windows):
  """The official collated training batch in our batch layout (windows padded to max_windows);
  `vids`: the rows' video names, whose source videos decide the negative pairs."""
  from sg_detr_jax.data.datasets import get_spec, source_id
  spec = get_spec("qvhighlights")
  b = len(lb["span_counts"])
  spans = np.zeros((b, max_windows, 2), np.float32)
  spans[:, :lb["span_labels_cxw"].shape[1]] = lb["span_labels_cxw"]
  span_mask = np.arange(max_windows)[None] < lb["span_counts"][:, None]
  return {
      "video": lb["src_vid"], "video_mask": lb["src_vid_mask"] > 0,
      "text": lb["src_txt"], "text_mask": lb["src_txt_mask"] > 0,
      "spans": spans, "span_mask": span_mask, "saliency": lb["saliency_all_labels"],
      "pos_idx": lb["saliency_pos_labels"].astype(np.int32),
      "neg_idx": lb["saliency_neg_labels"].astype(np.int32),
      "source_id": np.array([source_id(v, spec) for v in vids], np.int32),
      "span_seconds": lb["duration"],
      "duration": lb["duration"], "clip_len": np.full(b, 2.0, np.float32),
      "num_clips": lb["num_real_clips"], "batch_mask": np.ones(b, bool),
  }


@pytest.fixture(scope="module")
def golden_loss(golden):
  """The eval-mode loss, its terms and its gradient for the main batch and the FFTT variant."""
  from sg_detr_jax.losses.total import compute_losses

  config, graphdef, params = golden
  lb, ref = _load("loss_batch.npz"), _load("loss.json")
  # Eval mode: no collab query group (the official builds it in training only).
  loss_config = config.copy_and_resolve_references()
  loss_config.model.collab = False

  def loss_fn(p, batch):
    model = nnx.merge(graphdef, p)
    model.cfg = loss_config.model
    out = model(batch, key=jax.random.key(0), train=True)
    return compute_losses(out, batch, loss_config)

  value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  results = {}
  from sg_detr_jax.losses.saliency import real_negatives
  for name, r in (("main", ref), ("FFTT", ref["variant_real_neg_FFTT"])):
    vids = r["batch"]["vid"] if name == "main" else r["vid"]
    batch = jax.tree_util.tree_map(jnp.asarray, _loss_batch(lb, vids, config.data.max_windows))
    # Our source-video rule gives the official real_neg_mask ([F,T,T,T] and [F,F,T,T]).
    assert np.asarray(real_negatives(batch["source_id"], batch["batch_mask"])).tolist() == \
        r["real_neg_mask"]
    (total, terms), grads = value_and_grad(params, batch)
    results[name] = (float(total), jax.device_get(terms), grads)
  return config, results


@pytest.mark.parametrize("variant", ["main", "FFTT"])
def test_loss_terms_equal_official(golden_loss, variant):
  from sg_detr_jax.porting.official_names import to_official_terms

  config, results = golden_loss
  ref = _load("loss.json")
  ref = ref if variant == "main" else ref["variant_real_neg_FFTT"]
  total, terms, _ = results[variant]
  ours = to_official_terms(terms, config.loss, config.model.decoder_layers)
  checked = 0
  for name, entry in ref["terms"].items():
    if entry["weighted"] == 0.0 and entry["value"] == 0.0 or name not in ours:
      # 0-weight, 0-valued official placeholders (attn parts, center/width refs, orthogonal)
      assert entry["value"] == 0.0 or entry["weight"] == 0.0, name
      continue
    rel = abs(ours[name] - entry["value"]) / abs(entry["value"])
    assert rel <= 1e-5, f"{variant} {name}: ours {ours[name]:.7g}, official {entry['value']:.7g}"
    checked += 1
  assert checked >= 30  # every non-placeholder term of the official criterion
  from sg_detr_jax.losses.total import weights_table
  table = weights_table(terms, config.loss)
  assert total == pytest.approx(sum(table[k] * float(v) for k, v in terms.items()), rel=1e-6)
  official_total = ref["total_loss"]
  assert abs(total - official_total) / official_total <= 1e-6, (total, official_total)


def test_gradients_equal_official(golden_loss):
  from sg_detr_jax.porting import convert

  config, results = golden_loss
  grads = convert.to_official(results["main"][2], config.model)
  ref = _load("grads.npz")
  names = [k for k in ref if k != "__global_norm__"]
  assert len(names) == 359
  ours = {k: grads[k].astype(np.float64) for k in names}
  theirs = {k: ref[k].astype(np.float64) for k in names}
  sq = lambda d: sum(float((v ** 2).sum()) for v in d.values())
  whole = np.sqrt(sum(float(((ours[k] - theirs[k]) ** 2).sum()) for k in names) / sq(theirs))
  assert whole <= 1e-5, whole
  norm = np.sqrt(sq(ours))
  assert abs(norm - float(ref["__global_norm__"])) / float(ref["__global_norm__"]) <= 1e-5
  for k in names:
    if k.endswith(ZERO_GRAD_BIASES):
      _check_close(k, ours[k], theirs[k], 1e-7)
    elif np.linalg.norm(theirs[k]) == 0:
      assert np.linalg.norm(ours[k]) == 0, f"{k}: the official gradient is 0"
    else:
      rel = np.linalg.norm(ours[k] - theirs[k]) / np.linalg.norm(theirs[k])
      assert rel <= 1e-4, f"{k}: relative L2 {rel:.2e}"


def test_one_adamw_step_equals_official(golden, golden_loss):
  from sg_detr_jax.porting import convert
  from sg_detr_jax.training.optimizer import make_optimizer

  config, graphdef, params = golden
  ref = _load("loss.json")
  # The eval-mode loss also leaves the collab mapper without a gradient; training never does.
  model = nnx.merge(graphdef, params)
  frozen = model.params_without_gradient() + ("main_det_head.co_mapper_linear",
                                              "main_det_head.co_mapper_norm")
  tx, schedule = make_optimizer(config.optim, steps_per_epoch=10, frozen=frozen)
  assert float(schedule(0)) == pytest.approx(5e-6)  # warm-up epoch 0, as the official step
  grads = golden_loss[1]["main"][2]
  updates, _ = tx.update(grads, tx.init(params), params)
  after = convert.to_official(optax.apply_updates(params, updates), config.model)
  before = convert.to_official(params, config.model)
  expected = _load("params_after_step.npz")
  untouched = set(ref["params_without_grad"])
  assert len(untouched) == 7
  for k, v in expected.items():
    if k in untouched:
      assert np.array_equal(after[k], before[k]), f"{k} has no gradient and must not move"
    _check_close(k, after[k], v, 5e-7)
