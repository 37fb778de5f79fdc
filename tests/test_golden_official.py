"""Golden tests against the official PyTorch SG-DETR (../shared/reference/official_golden).

`tests/helpers/golden_run.py` converts the official weights (width 64) through the porting
user's path (`launch.convert_torch` -> orbax workdir -> restored params) and runs our model on the
golden inputs in its own process, started with the session (tests/conftest.py). Here, at the
tolerances of the golden README:
  * the eval-mode forward on `inputs.npz`: every head and every intermediate that our stages expose
    (sown under `nnx.capture`), atol 1e-5; anchors exactly;
  * the eval-mode training loss on `loss_batch.npz` (no dropout, no collab group): every official
    term at relative 1e-5 and the total at 1e-6, for the main batch and the FFTT variant;
  * d(total)/d(params): whole vector relative L2 1e-5, global norm 1e-5, per tensor 1e-4 (the
    decoder key-projection biases, whose exact gradient is 0, at atol 1e-7);
  * one AdamW step at the official warm-up lr: atol 5e-7, parameters without a gradient unchanged;
  * with bf16 product operands (`model.matmul_dtype=bfloat16`, fp32 accumulation), bf16
    tolerances (see the test: per-clip outputs within 3 % of their range, per-query outputs
    mostly so, the gradient within 15 % relative L2 and cosine 0.99);
  * with the ATSS stems as Winograd F(4, 3) (`model.conv_algorithm=winograd`), the forward at
    the fp32 tolerance.
"""

import json
import os

import numpy as np
import pytest

from conftest import SHARED

GOLDEN = os.path.join(SHARED, "reference", "official_golden")
# Decoder key-projection biases: exact gradient 0 (softmax is shift-invariant per query), the
# stored official values are round-off (README).
ZERO_GRAD_BIASES = ("key_content_proj.bias", "key_pos_proj.bias", "ca_kcontent_proj.bias",
                    "ca_kpos_proj.bias")


def _golden(name):
  path = os.path.join(GOLDEN, name)
  if not os.path.isfile(path):
    pytest.fail(f"golden file missing (set SG_DETR_SHARED to the shared/ folder): {path}")
  if name.endswith(".json"):
    with open(path) as f:
      return json.load(f)
  return dict(np.load(path))


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
  """What tests/helpers/golden_run.py wrote: {"forward", "loss", "grads", "after", "before",
  "params"}."""
  pytest.importorskip("torch")
  from conftest import helper_output  # the module pytest loaded (not a second copy)
  output, code, out_dir = helper_output("golden", "golden_run.py", tmp_path_factory, 900)
  assert code == 0 and "DONE" in output, output[-4000:]
  load = lambda n: dict(np.load(os.path.join(out_dir, n)))
  with open(os.path.join(out_dir, "loss.json")) as f:
    loss = json.load(f)
  with open(os.path.join(out_dir, "params.json")) as f:
    params = json.load(f)
  return {"forward": load("forward.npz"), "loss": loss, "grads": load("grads.npz"),
          "bf16": load("bf16.npz"), "winograd": load("winograd.npz"),
          "after": load("after.npz"), "before": load("before.npz"), "params": params}


def _check_close(name, ours, theirs, atol):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs official {theirs.shape}"
  diff = float(np.abs(ours - theirs).max())
  assert diff <= atol, f"{name}: max |diff| {diff:.2e} > {atol}"
  return diff


def _official_outputs() -> dict:
  """The official forward's head outputs, flattened under our output names."""
  from sg_detr_jax.models import outputs
  from sg_detr_jax.models.fpn import STRIDES
  from sg_detr_jax.porting.official_names import head_outputs
  return outputs.flatten(head_outputs(_golden("forward.npz"), len(STRIDES)))


def test_every_official_parameter_converts(ours):
  assert ours["params"]["converted"] == _golden("model.json")["weights"]["parameters"] == 912_038


def test_forward_equals_official(ours):
  from sg_detr_jax.models.fpn import STRIDES

  inputs, fw = _golden("inputs.npz"), _golden("forward.npz")
  f = ours["forward"]
  out = lambda k: f[f"out/{k}"]
  inter = lambda path: f[f"inter/{path}/0"]  # sow keeps a tuple: the first call's value

  lv = inputs["src_vid"].shape[1]
  official = _official_outputs()
  assert np.array_equal(out("anchors"), official.pop("anchors"))
  diffs = {k: _check_close(k, out(k), v, 1e-5) for k, v in official.items()}

  seq_first = lambda x: np.swapaxes(x, 0, 1)  # official [L, B, D] -> [B, L, D]
  sgca = seq_first(fw["inter/sgca_out_LvLt_B_D"])
  pairs = {
      "vid_proj": (inter("vid_proj"), fw["inter/vid_proj"]),
      "txt_proj": (inter("txt_proj"), fw["inter/txt_proj"]),
      "sent_token": (inter("sent_token"), fw["inter/sent_token"]),
      "sgca_video": (inter("sgca_video"), sgca[:, :lv]),
      "sgca_text": (inter("txt2vis_sal_encoder/text_out"), sgca[:, lv:]),
      "det_memory": (inter("det_memory"), seq_first(fw["inter/det_memory_Lv_B_D"])),
      "vid_pos": (inter("vid_pos"), seq_first(fw["inter/vid_pos_Lv_B_D"])),
      "memory_amplified": (inter("memory_amplified"), fw["x/memory_amplified"]),
      "qsel_content": (inter("qsel_content"), fw["inter/qsel_query_embs"]),
      "qsel_reference": (inter("qsel_reference"), fw["inter/qsel_ref_unsig"]),
      "enc_ref_unsig": (inter("qsel_reference"), fw["enc/ref_unsig"]),
      "decoder_hs": (inter("main_det_head/decoder_hs"), fw["inter/decoder_hs"]),
      "decoder_refs": (inter("main_det_head/decoder_refs"), fw["inter/decoder_refs"]),
      "decoder_iou": (out("pred_iou"), fw["inter/decoder_iou_logits"][..., 0]),
      "detr_offset": (out("pred_spans") - inter("main_det_head/decoder_refs"), fw["detr/offset"]),
  }
  for k in range(len(STRIDES)):
    pairs[f"fpn_l{k}"] = (f[f"inter/fpn_levels/0/{k}"], fw[f"inter/fpn_l{k}"])
  for name, (a, b) in pairs.items():
    diffs[name] = _check_close(name, a, b, 1e-5)
  print("max |diff| per output:", {k: f"{v:.1e}" for k, v in diffs.items()})


@pytest.mark.parametrize("variant", ["main", "FFTT"])
def test_loss_terms_equal_official(ours, variant):
  from configs import qvhighlights
  from sg_detr_jax.porting.official_names import to_official_terms

  config = qvhighlights.get_config()
  ref = _golden("loss.json")
  ref = ref if variant == "main" else ref["variant_real_neg_FFTT"]
  run = ours["loss"][variant]
  # Our source-video rule gives the official negative pairs ([F,T,T,T] and [F,F,T,T]).
  assert run["real_neg"] == ref["real_neg_mask"]
  official = to_official_terms(run["terms"], config.loss, config.model.decoder_layers)
  checked = 0
  for name, entry in ref["terms"].items():
    if name not in official:
      # 0-weight or 0-valued official placeholders (attn parts, center/width refs, orthogonal,
      # vfl) and the log_* parts' weights
      assert entry["value"] == 0.0 or entry["weight"] == 0.0, name
      continue
    rel = abs(official[name] - entry["value"]) / abs(entry["value"])
    assert rel <= 1e-5, f"{variant} {name}: ours {official[name]:.7g}, official {entry['value']:.7g}"
    checked += 1
  assert checked >= 30  # every term of the official criterion that carries a value
  assert run["total"] == pytest.approx(run["weighted_sum"], rel=1e-6)
  assert abs(run["total"] - ref["total_loss"]) / ref["total_loss"] <= 1e-6, run["total"]


def test_gradients_equal_official(ours):
  ref = _golden("grads.npz")
  names = [k for k in ref if k != "__global_norm__"]
  assert len(names) == 359
  mine = {k: ours["grads"][k].astype(np.float64) for k in names}
  theirs = {k: ref[k].astype(np.float64) for k in names}
  sq = lambda d: sum(float((v ** 2).sum()) for v in d.values())
  whole = np.sqrt(sum(float(((mine[k] - theirs[k]) ** 2).sum()) for k in names) / sq(theirs))
  assert whole <= 1e-5, whole
  norm, official_norm = np.sqrt(sq(mine)), float(ref["__global_norm__"])
  assert abs(norm - official_norm) / official_norm <= 1e-5, (norm, official_norm)
  for k in names:
    if k.endswith(ZERO_GRAD_BIASES):
      _check_close(k, mine[k], theirs[k], 1e-7)
    elif np.linalg.norm(theirs[k]) == 0:
      assert np.linalg.norm(mine[k]) == 0, f"{k}: the official gradient is 0"
    else:
      rel = np.linalg.norm(mine[k] - theirs[k]) / np.linalg.norm(theirs[k])
      assert rel <= 1e-4, f"{k}: relative L2 {rel:.2e}"


def test_one_adamw_step_equals_official(ours):
  assert ours["params"]["lr_step0"] == pytest.approx(5e-6)  # warm-up epoch 0, as the official
  expected = _golden("params_after_step.npz")
  untouched = set(_golden("loss.json")["params_without_grad"])
  assert len(untouched) == 7 and len(expected) == 359
  for k, v in expected.items():
    if k in untouched:
      assert np.array_equal(ours["after"][k], ours["before"][k]), f"{k} has no gradient: moved"
    _check_close(k, ours["after"][k], v, 5e-7)


def test_bf16_products_stay_close_to_official(ours):
  """bf16 operands carry 8 significant bits (~0.4 % per rounding). Checked against the official
  fp32 numbers, not against our own fp32 run.

  Outputs per clip or anchor (saliency, ATSS head) follow the products continuously: all within
  3 % of their official range. Outputs per query do not: the query selector takes the top 25 of
  285 proposal scores, and in this width-64 model near-tied scores swap places under bf16, which
  replaces a whole query (measured: ~17 % of the query rows); so most of each query output must
  agree as closely (>= 75 % of elements within 3 %, median within 1 %). The gradient (that of the
  same selection flips included): relative L2 within 15 %, cosine above 0.99 (measured 9.4 %,
  0.9956)."""
  official = _official_outputs()
  official.pop("anchors")
  report = {}
  for k, theirs in official.items():
    mine = ours["bf16"][f"out/{k}"].astype(np.float64)
    assert mine.shape == theirs.shape, k
    err = np.abs(mine - theirs) / np.abs(theirs).max()
    report[k] = (float(err.max()), float((err <= 0.03).mean()), float(np.median(err)))
    # The products really were rounded (not the fp32 program under another name).
    assert not np.array_equal(mine, ours["forward"][f"out/{k}"]), k
  print("bf16 forward (max, share within 3 %, median) of |diff| / max |official|:",
        {k: tuple(f"{x:.1e}" for x in v) for k, v in report.items()})
  for k, (worst, within, median) in report.items():
    if k.startswith(("saliency_", "atss_")):
      assert worst <= 0.03, (k, report[k])
    else:
      assert within >= 0.75 and median <= 0.01, (k, report[k])

  ref = _golden("grads.npz")
  names = [k for k in ref if k != "__global_norm__"]
  mine = np.concatenate([ours["bf16"][f"grad/{k}"].ravel() for k in names]).astype(np.float64)
  theirs = np.concatenate([ref[k].ravel() for k in names]).astype(np.float64)
  rel = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
  cosine = mine @ theirs / (np.linalg.norm(mine) * np.linalg.norm(theirs))
  print(f"bf16 gradient: relative L2 {rel:.2e}, cosine {cosine:.6f}")
  assert rel <= 0.15 and cosine >= 0.99, (rel, cosine)


def test_winograd_convolutions_stay_within_the_fp32_golden_tolerances(ours):
  """`model.conv_algorithm=winograd` (the ATSS stems as F(4, 3)) is not bitwise the direct sum but
  keeps the forward within the tolerance the fp32 port is held to: every output at atol 1e-5,
  against the official numbers (not against our own direct run). Its gradients: against XLA's
  convolution in tests/test_matmul.py."""
  official = _official_outputs()
  official.pop("anchors")
  for k, theirs in official.items():
    _check_close(f"winograd {k}", ours["winograd"][f"out/{k}"], theirs, 1e-5)
  # The ATSS outputs really came from another computation.
  assert not np.array_equal(ours["winograd"]["out/atss_logits"], ours["forward"]["out/atss_logits"])
