"""Checkpoint conversion both ways and per-layer numerical parity with torch.nn references.

torch is the optional `torch` extra: without it these tests skip (CI installs it)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from configs import qvhighlights, tiny  # noqa: E402
from sg_detr_jax.models import layers, param_map, sg_detr  # noqa: E402
from sg_detr_jax.models.local_saliency import LocalSaliencyHead  # noqa: E402
from sg_detr_jax.models.sgca import SGCALayer  # noqa: E402
from sg_detr_jax.models.transformer import EncoderLayer  # noqa: E402
from sg_detr_jax.porting import convert  # noqa: E402
from sg_detr_jax.porting.official_files import load_state_dict, save_state_dict  # noqa: E402
from tests.conftest import SHARED  # noqa: E402

OFFICIAL = os.path.join(SHARED, "reference", "official_sgdetr_state_dict.json")
ATOL = 1e-5


def random_official_state_dict(seed=0):
  """Exactly the official keys and shapes (from the reference file), random values."""
  entries = json.load(open(OFFICIAL))["state_dict"]
  rng = np.random.default_rng(seed)
  sd = {e["key"]: (0.05 * rng.standard_normal(e["shape"])).astype(np.float32) for e in entries}
  # Buffers are the anchors, fixed by the config: take the official construction's values.
  sd.update(convert.official_buffers(qvhighlights.get_config().model))
  return sd, entries


class Holder(nnx.Module):
  def __init__(self, m):
    self.m = m


def load(module, rules, torch_module_state):
  """Fills `module` (held as `m`) from a torch module's state_dict through our rules."""
  holder = Holder(module)
  params = nnx.state(holder, nnx.Param)
  sd = {k: v.detach().numpy() for k, v in torch_module_state.items()}
  nnx.update(holder, convert.assign(sd, rules, params))
  return holder.m


def t(x):
  return torch.from_numpy(np.asarray(x, np.float32))


# ---- whole-checkpoint conversion ------------------------------------------------------------------
def test_official_state_dict_converts_without_unused_keys_and_round_trips(tmp_path):
  from launch import convert_torch, export_torch
  sd, entries = random_official_state_dict()
  assert len(sd) == 363
  # A Lightning-style checkpoint: module prefix + extra entries around the state_dict.
  path = str(tmp_path / "official.ckpt")
  torch.save({"state_dict": {f"model.{k}": t(v) if v.dtype != np.float64 else torch.from_numpy(v)
                             for k, v in sd.items()}, "epoch": 3}, path)
  config = qvhighlights.get_config()
  workdir = str(tmp_path / "converted")
  assert convert_torch.convert(path, config, workdir) == 13_472_294
  out = str(tmp_path / "exported.pt")
  export_torch.export(workdir, out)
  back = load_state_dict(out)
  assert set(back) == set(sd)
  for k in sd:
    np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
  # export -> convert gives identical params
  workdir2 = str(tmp_path / "again")
  convert_torch.convert(out, config, workdir2)
  from sg_detr_jax.inference.predictor import Predictor
  p1 = Predictor.from_workdir(workdir).params
  p2 = Predictor.from_workdir(workdir2).params
  for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_conversion_errors_list_every_problem(tmp_path):
  sd, _ = random_official_state_dict()
  sd.pop("fpn.level0.0.depthwise.weight")
  sd["main_det_head.extra.weight"] = np.zeros(3, np.float32)
  sd["main_det_head.class_embed.weight"] = np.zeros((2, 256), np.float32)
  sd["aux_det_head.anchor_generator.cell_anchors.0"] = np.array([[0.0, 9.0]])
  params = nnx.state(sg_detr.create(qvhighlights.get_config()), nnx.Param)
  with pytest.raises(convert.ConversionError) as e:
    convert.from_official(sd, qvhighlights.get_config().model, params, where="X.pt")
  msg = str(e.value)
  for needle in ("X.pt", "unknown official keys (1)", "main_det_head.extra.weight",
                 "missing official keys (1)", "fpn.level0.0.depthwise.weight",
                 "shape mismatches (1)", "main_det_head.class_embed.weight: checkpoint (2, 256)",
                 "cell_anchors.0"):
    assert needle in msg, (needle, msg)


def test_pickle_that_runs_code_is_refused(tmp_path):
  import pickle
  marker = tmp_path / "pwned"

  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  path = str(tmp_path / "evil.pt")
  with open(path, "wb") as f:
    pickle.dump({"x": Evil()}, f)
  with pytest.raises(ValueError, match="refused"):
    load_state_dict(path)
  assert not marker.exists()


# ---- per-layer parity with torch.nn primitives (fp32, 1e-5) -------------------------------------
def test_layernorm_linear_prelu_ffn_match_torch():
  torch.manual_seed(0)
  d, h = 16, 40
  ref = torch.nn.ModuleDict({"mapping": torch.nn.Sequential(
      torch.nn.Linear(d, h), torch.nn.PReLU(), torch.nn.Dropout(0.0), torch.nn.Linear(h, d))})
  with torch.no_grad():
    ref["mapping"][1].weight.fill_(0.3)
  ffn = load(layers.FFN(d, h, 0.0, nnx.Rngs(0)), list(param_map._ffn("m", "ffn")),  # pylint: disable=protected-access
             {f"ffn.{k}": v for k, v in ref.state_dict().items()})
  x = np.random.default_rng(0).standard_normal((3, 5, d)).astype(np.float32)
  np.testing.assert_allclose(ffn(jnp.asarray(x)), ref["mapping"](t(x)).detach().numpy(), atol=ATOL)

  ln_ref = torch.nn.LayerNorm(d)
  with torch.no_grad():
    ln_ref.weight.normal_()
    ln_ref.bias.normal_()
  ln = load(layers.layer_norm(d, nnx.Rngs(0)), list(param_map._norm("m", "ln")),  # pylint: disable=protected-access
            {f"ln.{k}": v for k, v in ln_ref.state_dict().items()})
  np.testing.assert_allclose(ln(jnp.asarray(x)), ln_ref(t(x)).detach().numpy(), atol=ATOL)


@pytest.mark.parametrize("depthwise,stride,kernel", [(False, 1, 3), (True, 1, 3), (False, 2, 3),
                                                     (True, 2, 3), (False, 1, 1)])
def test_conv1d_matches_torch(depthwise, stride, kernel):
  torch.manual_seed(1)
  d_in, d_out = 8, (8 if depthwise else 12)
  ref = torch.nn.Conv1d(d_in, d_out, kernel, stride=stride, padding=kernel // 2,
                        groups=d_in if depthwise else 1)
  ours = load(layers.Conv1D(d_in, d_out, nnx.Rngs(0), stride=stride, depthwise=depthwise,
                            kernel_size=kernel),
              [("m.kernel", "c.weight", "conv"), ("m.bias", "c.bias", "copy")],
              {f"c.{k}": v for k, v in ref.state_dict().items()})
  x = np.random.default_rng(1).standard_normal((2, 12, d_in)).astype(np.float32)
  want = ref(t(x).transpose(1, 2)).transpose(1, 2).detach().numpy()  # torch is channels-first
  np.testing.assert_allclose(ours(jnp.asarray(x)), want, atol=ATOL)


def test_encoder_layer_matches_torch_multihead_attention_with_fused_in_proj():
  torch.manual_seed(2)
  d, heads, ffn_dim, length = 32, 4, 64, 7
  mha = torch.nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
  ffn = torch.nn.ModuleDict({"mapping": torch.nn.Sequential(
      torch.nn.Linear(d, ffn_dim), torch.nn.PReLU(), torch.nn.Dropout(0.0),
      torch.nn.Linear(ffn_dim, d))})
  norm1, norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
  with torch.no_grad():
    mha.in_proj_bias.normal_()
    for n in (norm1, norm2):
      n.weight.normal_()
  state = {**{f"l.layers.0.self_attn.{k}": v for k, v in mha.state_dict().items()},
           **{f"l.layers.0.ffn.{k}": v for k, v in ffn.state_dict().items()},
           **{f"l.layers.0.norm1.{k}": v for k, v in norm1.state_dict().items()},
           **{f"l.layers.0.norm2.{k}": v for k, v in norm2.state_dict().items()}}
  rules = [(o.replace("m.layers.0", "m"), th, tr) for o, th, tr in param_map.encoder("m", "l", 1)]
  ours = load(EncoderLayer(d, heads, ffn_dim, 0.0, 0.0, nnx.Rngs(0)), rules, state)
  rng = np.random.default_rng(2)
  x, pos = (rng.standard_normal((2, length, d)).astype(np.float32) for _ in range(2))
  mask = np.ones((2, length), bool)
  mask[1, 5:] = False
  qk = t(x + pos)
  attn, _ = mha(qk, qk, t(x), key_padding_mask=torch.from_numpy(~mask), need_weights=False)
  y = norm1(t(x) + attn)
  want = norm2(y + ffn["mapping"](y)).detach().numpy()
  got = ours(jnp.asarray(x), jnp.asarray(pos), jnp.asarray(mask), layers.KeySeq(None))
  np.testing.assert_allclose(got, want, atol=ATOL)


def _torch_attention(q, k, v, heads, key_padding_mask, gate=None):
  """Multi-head attention with no in-projections, from torch primitives; gate scales weights."""
  b, lq, d = q.shape
  split = lambda x: x.view(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
  logits = split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5
  logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
  w = torch.softmax(logits, dim=-1)
  if gate is not None:
    w = w * gate[:, None, :, None]
  return (w @ split(v)).transpose(1, 2).reshape(b, lq, d)


def test_attention_pooling_layer_matches_torch():
  """The local-saliency pooling (class attention without k/v projections, pre-norm FFN)."""
  torch.manual_seed(3)
  d, heads, ffn_dim = 32, 4, 64
  attn_norm, ffn_norm, out_proj = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d), torch.nn.Linear(d, d)
  ffn = torch.nn.Sequential(torch.nn.Linear(d, ffn_dim), torch.nn.PReLU(), torch.nn.Dropout(0.0),
                            torch.nn.Linear(ffn_dim, d))
  norm = torch.nn.LayerNorm(d)
  cls_q = torch.randn(d) * 0.5
  with torch.no_grad():
    for n in (attn_norm, ffn_norm, norm):
      n.weight.normal_()
      n.bias.normal_()
  p = "h.sentence_pooling"
  state = {f"{p}.cls_q": cls_q, "h.temp": torch.tensor(2.5), "h.a_param": torch.tensor(-0.3)}
  for i in range(2):  # the same torch layers twice: the structure is what is tested
    state.update({f"{p}.layers.{i}.attn_norm.{k}": v for k, v in attn_norm.state_dict().items()})
    state.update({f"{p}.layers.{i}.ffn_norm.{k}": v for k, v in ffn_norm.state_dict().items()})
    state.update({f"{p}.layers.{i}.attn.out_proj.{k}": v for k, v in out_proj.state_dict().items()})
    state.update({f"{p}.layers.{i}.ffn.mapping.{k}": v for k, v in ffn.state_dict().items()})
  state.update({f"{p}.norm.{k}": v for k, v in norm.state_dict().items()})
  head = load(LocalSaliencyHead(d, heads, ffn_dim, 2, 0.0, 3.0, nnx.Rngs(0)),
              list(param_map.local_saliency("m", "h", 2)), state)
  rng = np.random.default_rng(3)
  text = rng.standard_normal((2, 6, d)).astype(np.float32)
  video = rng.standard_normal((2, 9, d)).astype(np.float32)
  tmask = np.ones((2, 6), bool)
  tmask[0, 4:] = False
  q = cls_q.expand(2, 1, d)
  for i in range(2):
    kv = attn_norm(t(text))
    q = q + out_proj(_torch_attention(q, kv, kv, heads, torch.from_numpy(~tmask)))
    q = q + ffn(ffn_norm(q))
    if i == 0:
      q = norm(q)
  cos = torch.nn.functional.cosine_similarity(q, t(video), dim=-1)
  want = (torch.exp(torch.tensor(2.5)) * cos - 0.3).detach().numpy()
  got, _ = head(jnp.asarray(text), jnp.asarray(tmask), jnp.asarray(video), layers.KeySeq(None))
  np.testing.assert_allclose(got, want, atol=ATOL)


def test_sgca_gated_layer_matches_torch():
  torch.manual_seed(4)
  d, heads, ffn_dim = 32, 4, 64
  out_proj = torch.nn.Linear(d, d)
  ffn = torch.nn.Sequential(torch.nn.Linear(d, ffn_dim), torch.nn.PReLU(), torch.nn.Dropout(0.0),
                            torch.nn.Linear(ffn_dim, d))
  norm1, norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
  with torch.no_grad():
    for n in (norm1, norm2):
      n.weight.normal_()
  e = "s.t2v_encoder.layers.0"
  state = {**{f"{e}.self_attn.out_proj.{k}": v for k, v in out_proj.state_dict().items()},
           **{f"{e}.ffn.mapping.{k}": v for k, v in ffn.state_dict().items()},
           **{f"{e}.norm1.{k}": v for k, v in norm1.state_dict().items()},
           **{f"{e}.norm2.{k}": v for k, v in norm2.state_dict().items()}}
  rules = [(o.replace("m.layers.0", "m"), th, tr) for o, th, tr in param_map.sgca("m", "s", 1)
           if o.startswith("m.layers.0")]
  ours = load(SGCALayer(d, heads, ffn_dim, 0.0, 0.0, nnx.Rngs(0)), rules, state)
  rng = np.random.default_rng(4)
  video, pos = (rng.standard_normal((2, 9, d)).astype(np.float32) for _ in range(2))
  text = rng.standard_normal((2, 5, d)).astype(np.float32)
  sal = rng.standard_normal((2, 9)).astype(np.float32) * 3
  tmask = np.ones((2, 5), bool)
  tmask[1, 3:] = False
  gate = torch.sigmoid(t(sal))
  v = t(video) + out_proj(_torch_attention(t(video + pos), t(text), t(text), heads,
                                           torch.from_numpy(~tmask), gate))
  v = v + norm1(ffn(v))
  want = norm2(v).detach().numpy()
  got, _ = ours(jnp.asarray(video), jnp.asarray(pos), jnp.asarray(text), jnp.asarray(tmask),
                jnp.asarray(sal), layers.KeySeq(None))
  np.testing.assert_allclose(got, want, atol=ATOL)
  # the gate matters: without it the output differs
  ungated = SGCALayer(d, heads, ffn_dim, 0.0, 0.0, nnx.Rngs(0), gated=False)
  nnx.update(ungated, nnx.state(ours, nnx.Param))
  other, _ = ungated(jnp.asarray(video), jnp.asarray(pos), jnp.asarray(text), jnp.asarray(tmask),
                     jnp.asarray(sal), layers.KeySeq(None))
  assert np.abs(np.asarray(other) - want).max() > 1e-2


def test_safetensors_round_trip(tmp_path):
  pytest.importorskip("safetensors")  # part of the torch extra
  sd = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float32(2.0) * np.ones(())}
  path = str(tmp_path / "x.safetensors")
  save_state_dict(sd, path)
  back = load_state_dict(path)
  np.testing.assert_array_equal(back["a.weight"], sd["a.weight"])
  assert back["b"].shape == ()


def test_tiny_model_conversion_round_trip_keeps_forward():
  """Our params -> official names -> our params: the parameters and the forward are identical."""
  from sg_detr_jax.data.random_batch import random_batch
  from sg_detr_jax.models import outputs
  c = tiny.get_config()
  model = sg_detr.create(c)
  graphdef, params = nnx.split(model, nnx.Param)
  back = convert.from_official(convert.to_official(params, c.model), c.model,
                               nnx.state(sg_detr.create(c, rng_seed=1), nnx.Param))
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  batch = random_batch(c, 2)
  forward = jax.jit(lambda p, b: nnx.merge(graphdef, p)(b))
  out1, out2 = (outputs.flatten(forward(p, batch)) for p in (params, back))
  assert set(out1) == set(out2) and "pred_spans" in out1
  for k in out1:
    np.testing.assert_array_equal(np.asarray(out1[k]), np.asarray(out2[k]), err_msg=k)


def test_compare_torch_benchmark_runs_both_sides(capsys):
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
  import compare_torch
  result = compare_torch.run(tiny.get_config(), "torch_mlp_adapter:make", batch=2, steps=1)
  for side in ("jax", "torch"):
    assert result[side]["train_s"] > 0 and result[side]["infer_s"] > 0
  assert result["train_speedup"] == pytest.approx(result["torch"]["train_s"] / result["jax"]["train_s"])
  assert '"train_speedup"' in capsys.readouterr().out
