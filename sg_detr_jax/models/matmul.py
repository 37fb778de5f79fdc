"""The dense layers' matrix product `x @ w`, with a backward of two plain 2-D GEMMs.

`dense(x, w)` is `x [..., K] @ w [K, N] -> [..., N]`, the product under every `nnx.Linear` of the
model (through `DenseDot`, its `dot_general`) and the encoder layers' fused in-projection.

Why a custom VJP: the transpose JAX derives for `w`'s gradient contracts `x` and the cotangent over
all leading axes at once ([B, L, K] x [B, L, N] -> [K, N]); XLA:CPU lowers that contraction with a
transposing copy in front of a GEMM, at about half the GEMM rate of the forward (measured on the
2-core CPU: an FFN's forward + backward at 80-87 GFLOP/s through JAX's transpose, 164 GFLOP/s
through the one below, bitwise equal gradients). Here the leading axes are flattened first, so
both backward products are plain [M, K] x [K, N] GEMMs.

`operand_dtype` (`config.model.matmul_dtype`): "float32" multiplies in float32, the official
arithmetic. "bfloat16" rounds both operands of every product (forward and backward) to bfloat16
and accumulates in float32, as TPUs and the GPUs' tensor cores do; on CPUs with AMX (Sapphire
Rapids and later) XLA then reaches ~400 GFLOP/s instead of ~150. Activations, parameters, their
gradients and the optimizer stay in the model's dtype.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

OPERAND_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _product(a: jax.Array, b: jax.Array, operand_dtype, out_dtype) -> jax.Array:
  """a [M, K] (or [..., K]) @ b [K, N], operands in `operand_dtype`, accumulated in float32."""
  out = jnp.matmul(a.astype(operand_dtype), b.astype(operand_dtype),
                   preferred_element_type=jnp.float32)
  return out.astype(out_dtype)


def _product_transposed(a: jax.Array, b: jax.Array, operand_dtype, out_dtype) -> jax.Array:
  """a [..., N] @ b[K, N]^T -> [..., K] (the input gradient of a product with b).

  In float32 it is `a @ b.T`. In bfloat16, XLA:CPU runs a product on its fast (YNNPACK, AMX)
  kernels only when the right operand is row-major in the contracted dimension; it folds `b.T`
  into the product as a column-major operand, and then converts both operands back to float32
  for its generic kernel (measured: 10.3 ms for [2432, 256] x [256, 1024]). Reversing the
  contracted axis of both operands leaves the sum unchanged (its order only) and keeps the
  transposed copy of b a real, row-major array: 3.2 ms.
  """
  if operand_dtype == jnp.float32:
    return _product(a, b.T, operand_dtype, out_dtype)
  return _product(jnp.flip(a.astype(operand_dtype), -1), jnp.flip(b.T.astype(operand_dtype), 0),
                  operand_dtype, out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x: jax.Array, w: jax.Array, operand_dtype: str = "float32") -> jax.Array:
  """x [..., K] @ w [K, N] -> [..., N] in x's and w's common dtype (see the module docstring)."""
  return _product(x, w, OPERAND_DTYPES[operand_dtype], jnp.result_type(x, w))


def _residuals(operand_dtype: str, a: jax.Array, b: jax.Array):
  """What a backward keeps of its operands: their rounded values (what it multiplies by, half the
  memory in bfloat16), and their own dtypes as zero-size arrays (residuals must be arrays)."""
  dt = OPERAND_DTYPES[operand_dtype]
  return a.astype(dt), b.astype(dt), (jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))


def _dense_fwd(x, w, operand_dtype):
  return dense(x, w, operand_dtype), _residuals(operand_dtype, x, w)


def _dense_bwd(operand_dtype, residuals, g):
  x, w, (x_tag, w_tag) = residuals
  dt = OPERAND_DTYPES[operand_dtype]
  dx = _product_transposed(g, w, dt, x_tag.dtype)
  k, n = w.shape
  dw = _product(x.reshape(-1, k).T, g.reshape(-1, n), dt, w_tag.dtype)
  return dx, dw


dense.defvjp(_dense_fwd, _dense_bwd)


def _conv(x: jax.Array, k: jax.Array, operand_dtype, out_dtype,
          transposed: bool = False) -> jax.Array:
  """x [B, L, Cin] * k [T, Cin, Cout], stride 1, zero padding T // 2 -> [B, L, Cout]; with
  `transposed`, k is [T, Cout, Cin] and tap i multiplies by k[i]^T.

  Float32: XLA's convolution (~175 GFLOP/s on the 2-core CPU). Bfloat16: XLA:CPU has no fast
  bf16 convolution (it converts to float32), so each tap is one product of the whole padded
  input, and the outputs are summed shifted, in float32 (a [32, 152, 256] layer: 5.7 ms against
  12.8 ms; shifting the inputs instead copies them: 8.1 ms).
  """
  taps, pad, length = k.shape[0], k.shape[0] // 2, x.shape[1]
  if operand_dtype == jnp.float32:
    if transposed:
      k = k.transpose(0, 2, 1)
    y = jax.lax.conv_general_dilated(x.astype(operand_dtype), k.astype(operand_dtype), (1,),
                                     [(pad, pad)], dimension_numbers=("NWC", "WIO", "NWC"),
                                     preferred_element_type=jnp.float32)
    return y.astype(out_dtype)
  xp = jnp.pad(x.astype(operand_dtype), ((0, 0), (pad, pad), (0, 0)))
  product = _product_transposed if transposed else _product
  y = sum(product(xp, k[i], operand_dtype, jnp.float32)[:, i:i + length] for i in range(taps))
  return y.astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv1d(x: jax.Array, k: jax.Array, operand_dtype: str = "float32") -> jax.Array:
  """Dense 1-D convolution, stride 1, zero padding T // 2 (T odd): x [B, L, Cin] * k [T, Cin, Cout]
  -> [B, L, Cout], y[t] = sum_i x[t + i - T // 2] @ k[i].

  The forward is XLA's convolution (float32) or a sum of shifted products (bfloat16, see `_conv`).
  The backward: the input gradient is the convolution of the cotangent with the flipped,
  transposed kernel; the kernel gradient is one 2-D GEMM of the padded input ([B * (L + T - 1),
  Cin]) with the shifted cotangents side by side ([B * (L + T - 1), T * Cout]). XLA's own kernel
  gradient first transposes the input to a batch-minor layout, a copy that ran at ~0.3 GB/s on
  the 2-core CPU (~15 % of the train step for the ATSS head and FPN).
  """
  return _conv(x, k, OPERAND_DTYPES[operand_dtype], jnp.result_type(x, k))


def _conv_fwd(x, k, operand_dtype):
  return conv1d(x, k, operand_dtype), _residuals(operand_dtype, x, k)


def _conv_bwd(operand_dtype, residuals, g):
  x, k, (x_tag, k_tag) = residuals
  dt = OPERAND_DTYPES[operand_dtype]
  taps, c_in, c_out = k.shape
  pad = taps // 2
  # dx[s] = sum_j g[s + j - pad] @ k[T - 1 - j]^T: a convolution with the flipped, transposed kernel.
  dx = _conv(g, jnp.flip(k, 0), dt, x_tag.dtype, transposed=True)
  # dk[i] = sum_t x[t + i - pad]^T g[t] = sum_s xp[s]^T g_i[s] over the padded rows s, with g_i
  # the cotangent shifted down by i rows: one 2-D product of the padded input (read in place, as
  # a transposed operand) with the shifted cotangents side by side. Shifting the inputs instead
  # made XLA copy and transpose each shifted slice (~12 ms per [4864, 256] slice). XLA:CPU
  # multiplies a transposed operand in float32 only: the rounded operands are converted here, once.
  xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad), (0, 0))).reshape(-1, c_in)
  g32 = g.astype(dt).astype(jnp.float32)
  shifted = jnp.concatenate([jnp.pad(g32, ((0, 0), (i, taps - 1 - i), (0, 0)))
                             for i in range(taps)], axis=-1).reshape(-1, taps * c_out)
  dk = _product(xp.T, shifted, jnp.float32, k_tag.dtype)  # [c_in, taps * c_out]
  return dx, dk.reshape(c_in, taps, c_out).transpose(1, 0, 2)


conv1d.defvjp(_conv_fwd, _conv_bwd)


@dataclasses.dataclass(frozen=True)
class DenseDot:
  """`nnx.Linear(dot_general=DenseDot(...))`: its `x @ kernel` through `dense`.

  A frozen dataclass, so two models built from equal configs have equal (hashable) graphs and
  share their compiled steps.
  """
  operand_dtype: str = "float32"

  def __call__(self, x, w, dimension_numbers, precision=None, preferred_element_type=None,
               out_sharding=None):
    del precision, out_sharding  # XLA:CPU / GPU ignore the former; the latter is never given
    if dimension_numbers != (((x.ndim - 1,), (0,)), ((), ())):
      raise ValueError(f"DenseDot computes x[..., K] @ w[K, N] only, got {dimension_numbers}")
    out = dense(x, w, self.operand_dtype)
    return out if preferred_element_type is None else out.astype(preferred_element_type)


def set_operand_dtype(model, operand_dtype: str) -> None:
  """Gives every `DenseDot` of `model` (the `dot_general` attribute of its linear layers and 1x1
  convolutions) the operand dtype `operand_dtype` ("float32" | "bfloat16")."""
  if operand_dtype not in OPERAND_DTYPES:
    raise ValueError(f"model.matmul_dtype must be one of {sorted(OPERAND_DTYPES)}, "
                     f"got {operand_dtype!r}")
  from flax import nnx  # local: the products above do not depend on Flax
  for _, module in nnx.iter_modules(model):
    if isinstance(getattr(module, "dot_general", None), DenseDot):
      module.dot_general = DenseDot(operand_dtype)
