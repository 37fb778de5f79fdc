"""models/matmul.py: the dense layers' products with their hand-written backward, and bf16 operands."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sg_detr_jax.models import layers, matmul, winograd

DIMS = (((2,), (0,)), ((), ()))


def _rand(shape, seed):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _xla_conv(x, k):
  pad = k.shape[0] // 2
  return jax.lax.conv_general_dilated(x, k, (1,), [(pad, pad)],
                                      dimension_numbers=("NWC", "WIO", "NWC"))


def _value_and_grads(fn, x, w, cotangent):
  """fn(x, w) and the gradients of <fn(x, w), cotangent> with respect to x and w."""
  return fn(x, w), jax.grad(lambda a, b: jnp.sum(fn(a, b) * cotangent), (0, 1))(x, w)


def _assert_close(a, b, rtol):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape
  err = np.abs(a - b).max() / np.abs(b).max()
  assert err <= rtol, err


@pytest.mark.parametrize("shape", [(4, 7, 16), (3, 16)])
def test_dense_equals_jax_product_and_its_gradients(shape):
  x, w = _rand(shape, 0), _rand((16, 24), 1)
  ct = _rand(shape[:-1] + (24,), 2)
  y, (dx, dw) = _value_and_grads(lambda a, b: matmul.dense(a, b), x, w, ct)
  y_ref, (dx_ref, dw_ref) = _value_and_grads(lambda a, b: a @ b, x, w, ct)
  np.testing.assert_array_equal(y, y_ref)  # the forward is the same GEMM
  _assert_close(dx, dx_ref, 1e-6)
  _assert_close(dw, dw_ref, 1e-6)  # the leading axes flattened: another summation order at most
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32


@pytest.mark.parametrize("taps", [3, 5])
def test_conv1d_equals_xla_convolution_and_its_gradients(taps):
  x, k, ct = _rand((3, 11, 8), 0), _rand((taps, 8, 5), 1), _rand((3, 11, 5), 2)
  y, (dx, dk) = _value_and_grads(matmul.conv1d, x, k, ct)
  y_ref, (dx_ref, dk_ref) = _value_and_grads(_xla_conv, x, k, ct)
  np.testing.assert_array_equal(y, y_ref)
  _assert_close(dx, dx_ref, 1e-6)
  _assert_close(dk, dk_ref, 1e-6)


@pytest.mark.parametrize("length", [1, 13])
def test_winograd_conv_equals_the_direct_sum_and_its_gradients(length):
  # A length below the 4-row tile and one past a multiple of it: the last tile's padding.
  x, k, ct = _rand((3, length, 24), 0), _rand((3, 24, 20), 1), _rand((3, length, 20), 2)
  y, (dx, dk) = _value_and_grads(winograd.conv1d, x, k, ct)
  y_ref, (dx_ref, dk_ref) = _value_and_grads(_xla_conv, x, k, ct)
  # The transforms' rounding: a few 1e-6 of the scale (the direct sums agree to ~5e-7).
  _assert_close(y, y_ref, 1e-5)
  _assert_close(dx, dx_ref, 1e-5)
  _assert_close(dk, dk_ref, 1e-5)
  # In float64 the transforms are exact: A^T [(G g) * (B^T d)] is the 4-output correlation.
  rng = np.random.default_rng(0)
  d, g = rng.standard_normal(6), rng.standard_normal(3)
  tile = winograd._AT @ ((winograd._G @ g) * (winograd._BT @ d))
  np.testing.assert_allclose(tile, [d[i:i + 3] @ g for i in range(4)], rtol=1e-12, atol=1e-12)
  with pytest.raises(ValueError, match="3-tap"):
    winograd.conv1d(x, _rand((5, 24, 20), 3))


def _round_bf16(a):
  return a.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_bf16_operands_round_every_product_and_accumulate_in_fp32(jit):
  """Forward and both backward products multiply bf16-rounded operands, summed in float32: equal
  to the fp32 products of the rounded operands (and not to the unrounded ones). Also compiled as
  one program, where XLA rewrites the products (transposes folded, operands converted)."""
  x, w, ct = _rand((4, 9, 64), 0), _rand((64, 32), 1), _rand((4, 9, 32), 2)
  run = jax.jit(_value_and_grads, static_argnums=0) if jit else _value_and_grads
  y, (dx, dw) = run(lambda a, b: matmul.dense(a, b, "bfloat16"), x, w, ct)
  rx, rw, rct = _round_bf16(x), _round_bf16(w), _round_bf16(ct)
  _assert_close(y, rx @ rw, 1e-6)
  _assert_close(dx, rct @ rw.T, 1e-6)
  _assert_close(dw, rx.reshape(-1, 64).T @ rct.reshape(-1, 32), 1e-6)
  # Rounding really happened: ~2^-9 relative per operand, far above fp32 round-off.
  assert np.abs(np.asarray(y - x @ w)).max() / np.abs(np.asarray(x @ w)).max() > 1e-4
  # Outputs and gradients keep the activations' / parameters' dtype.
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32

  k = _rand((3, 64, 32), 3)
  y, (dx, dk) = run(lambda a, b: matmul.conv1d(a, b, "bfloat16"), x, k, ct)
  y_ref, (dx_ref, dk_ref) = _value_and_grads(_xla_conv, rx, _round_bf16(k), rct)
  _assert_close(y, _xla_conv(rx, _round_bf16(k)), 1e-6)
  _assert_close(dx, dx_ref, 1e-6)
  _assert_close(dk, dk_ref, 1e-6)


def test_dense_dot_is_hashable_by_value_and_checks_its_contraction():
  assert matmul.DenseDot("bfloat16") == matmul.DenseDot("bfloat16")
  assert hash(matmul.DenseDot()) == hash(matmul.DenseDot("float32"))
  assert matmul.DenseDot() != matmul.DenseDot("bfloat16")
  x, w = _rand((2, 3, 4), 0), _rand((4, 5), 1)
  np.testing.assert_array_equal(matmul.DenseDot()(x, w, DIMS), x @ w)
  with pytest.raises(ValueError, match="x\\[..., K\\] @ w\\[K, N\\]"):
    matmul.DenseDot()(x, w.T, (((2,), (1,)), ((), ())))


def test_model_products_follow_the_config():
  from conftest import tiny_config
  from sg_detr_jax.models import sg_detr

  def dots(model):
    found = [(path, m.dot_general) for path, m in nnx.iter_modules(model)
             if isinstance(m, (nnx.Linear, layers.Conv1D))]
    paths = {path for path, _ in found}
    # Among them: the fused in-projection, a 1x1 and a 3-tap convolution, an MLP layer.
    assert {("det_encoder", "layers", 0, "in_proj"), ("fpn", "level0", "conv1", "pointwise"),
            ("aux_det_head", "cls_stem", "convs", 0),
            ("main_det_head", "decoder", "span_embed", "layers", 2)} <= paths, sorted(paths)
    return {d for _, d in found}

  c = tiny_config()
  assert dots(sg_detr.create(c)) == {matmul.DenseDot("float32")}
  c.model.matmul_dtype = "bfloat16"
  model = sg_detr.create(c)
  assert dots(model) == {matmul.DenseDot("bfloat16")}
  # Models of equal configs have equal graphs, so they share compiled steps.
  assert nnx.graphdef(model) == nnx.graphdef(sg_detr.create(c))
  c.model.matmul_dtype = "float16"
  with pytest.raises(ValueError, match="model.matmul_dtype must be one of"):
    sg_detr.create(c)


def test_conv_algorithm_switch_reaches_the_atss_stems_only_and_keeps_the_outputs_close():
  from conftest import tiny_config
  from sg_detr_jax.models import sg_detr

  def algorithms(model):
    return {path: m.algorithm for path, m in nnx.iter_modules(model)
            if isinstance(m, layers.Conv1D) and not m.depthwise and m.kernel.shape[0] == 3}

  c = tiny_config()
  direct = sg_detr.create(c)
  c.model.conv_algorithm = "winograd"
  fast = sg_detr.create(c)
  found = algorithms(fast)
  stems = {p for p in found if p[1] in ("cls_stem", "reg_stem")}
  assert stems and {found[p] for p in stems} == {"winograd"}
  assert {found[p] for p in set(found) - stems} == {"direct"}  # the 1-2 channel output convs
  assert set(algorithms(direct).values()) == {"direct"}
  # Same parameters (same seed), so the same checkpoints; outputs within the transforms' rounding.
  for a, b in zip(jax.tree.leaves(nnx.state(direct)), jax.tree.leaves(nnx.state(fast))):
    np.testing.assert_array_equal(a, b)
  # The head on FPN-like levels (the whole model's forward runs in tests/test_model.py).
  d = c.model.d_model
  levels = [_rand((2, n, d), i) for i, n in enumerate((16, 8, 4, 2))]
  head = jax.jit(lambda m, x: m(x), static_argnums=0)  # one compile instead of eager op by op
  for a, b in zip(jax.tree.leaves(head(fast.aux_det_head, levels)),
                  jax.tree.leaves(head(direct.aux_det_head, levels))):
    _assert_close(a, b, 2e-5)
    assert not np.array_equal(a, b)  # another computation ran
  c.model.conv_algorithm = "fft"
  with pytest.raises(ValueError, match="model.conv_algorithm must be one of"):
    sg_detr.create(c)
