"""Building blocks shared by the SG-DETR modules (flax.nnx), batch-first everywhere.

Randomness (dropout, DropPath) comes from an explicit `jax.random` key passed down at call time, not
from NNX RNG state, so a jitted step is a pure function of (params, batch, rng) and a resumed run
replays exactly. `train=False` (or `key=None`) makes every stochastic op the identity.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from sg_detr_jax.models import matmul, winograd

# Finite "minus infinity" for masked logits: safe under bf16 (its max is ~3.4e38) and never produces
# NaN when a whole row is masked.
MASK_VALUE = -1e9
TORCH_LN_EPS = 1e-5  # torch.nn.LayerNorm default (nnx defaults to 1e-6)


# -- initialisers ---------------------------------------------------------------------------------
# Every parameter starts like the official PyTorch model's (tests/test_golden_init.py checks the
# family, scale and zero pattern of all 359 official tensors at full width). Kernels are stored
# [in, out] (Linear) and [k, in / groups, out] (Conv1D); torch's are [out, in] and [out, in / g, k].


def xavier_uniform(gain: float = 1.0):
  """torch.nn.init.xavier_uniform_ with `gain`: U(+-gain sqrt(6 / (fan_in + fan_out))).

  For kernels stored [in, out] (a fused [d, 3d] in-projection has torch's fans: d in, 3d out).
  """
  return jax.nn.initializers.variance_scaling(gain ** 2, "fan_avg", "uniform")


def torch_uniform(fan_in: int | None = None):
  """torch's default init of nn.Linear and nn.Conv1d: U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)).

  Their `reset_parameters` draw the weight with kaiming_uniform_(a=sqrt(5)), whose bound
  gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) = sqrt(1 / 3) is 1 / sqrt(fan_in), and the
  bias from U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)) with the same fan_in: in_features for a Linear,
  in_channels / groups * kernel_size for a Conv1d. Left as None, fan_in is read from a kernel's
  shape (the product of every axis but the last: [in] of a Linear kernel [in, out], [k, in / groups]
  of a Conv1D kernel); a bias must be given its layer's fan_in.
  """
  def init(key, shape, dtype=jnp.float32):
    if fan_in is None and len(shape) < 2:
      raise ValueError(f"torch_uniform needs the layer's fan_in for a shape {shape} (a bias)")
    bound = 1.0 / math.sqrt(fan_in if fan_in is not None else math.prod(shape[:-1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def normal(std: float):
  """torch.nn.init.normal_(std=std) (and nn.Embedding's default with std 1)."""
  return jax.nn.initializers.normal(std)


def trunc_normal(std: float, lower: float = -2.0, upper: float = 2.0):
  """torch.nn.init.trunc_normal_(std=std, a=lower, b=upper): N(0, std^2) cut to [lower, upper].

  torch's bounds are absolute values, not multiples of std: with std 0.02 the default +-2 is
  +-100 std, so the draw is a plain N(0, 0.02^2). (`jax.nn.initializers.truncated_normal(std)` cuts
  at +-2 std instead and leaves 0.88 std.)
  """
  def init(key, shape, dtype=jnp.float32):
    x = jax.random.truncated_normal(key, lower / std, upper / std, shape, jnp.float32)
    return (x * std).astype(dtype)
  return init


def leaky_relu_gain(slope: float) -> float:
  """torch.nn.init.calculate_gain('leaky_relu', slope)."""
  return math.sqrt(2.0 / (1 + slope ** 2))


def prior_bias(prior_prob: float) -> float:
  """The classifier bias -log((1 - p) / p), for which sigmoid(bias) = p (RetinaNet's prior init)."""
  return -math.log((1 - prior_prob) / prior_prob)


class KeySeq:
  """Hands out the randomness of one forward pass from one key; None stays None (deterministic).

  `keys()` gives a dropout seed (uint32[2]) for `dropout` / `drop_path`; `keys.key()` gives a real
  PRNG key for everything else (DN noise, collab negatives). Seeds come from one threefry draw of
  `_SEED_BLOCK` pairs at a time instead of one threefry split + one threefry mask per site: each
  threefry call is a large inlined graph, and the ~40 dropout sites of the model used to dominate
  the train step's compile time (17 s of a tiny model's 45 s) and cost a third of its forward time.

  Measured again with jax 0.10.2 (`benchmarks/dropout_rng.py --steps=3`, configs/synthetic.py,
  batch 16, 2-core CPU, 2026-12-03): masks from the counter hash 0.751 s per train step (compile
  83.1 s); from `jax.random.bernoulli` with threefry 1.013 s (101.7 s), with rbg 1.003 s (89.8 s).
  The hash stays: a quarter off the step and a fifth off the compile.
  """

  _SEED_BLOCK = 64

  def __init__(self, key: jax.Array | None):
    self._key = key
    self._seeds = None
    self._used = 0
    self._blocks = 0
    self._keys = 0

  def __call__(self) -> jax.Array | None:
    if self._key is None:
      return None
    if self._seeds is None or self._used == self._SEED_BLOCK:
      block_key = jax.random.fold_in(self._key, self._blocks)
      self._seeds = jax.random.bits(block_key, (self._SEED_BLOCK, 2), jnp.uint32)
      self._blocks += 1
      self._used = 0
    seed = self._seeds[self._used]
    self._used += 1
    return seed

  def key(self) -> jax.Array | None:
    """A fresh PRNG key, independent of the dropout seeds (negative fold-in indices)."""
    if self._key is None:
      return None
    self._keys += 1
    return jax.random.fold_in(self._key, jnp.uint32(2 ** 32 - self._keys))


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a cheap bijection with full avalanche (uint32 wrap-around)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def hash_bits(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 random bits of `shape`, a counter-based hash of (element index, seed uint32[2]).

  Two finaliser rounds around the second seed word keep masks from different seeds from being
  shifted copies of each other. The element index is global, so the bits do not depend on how the
  array is sharded.
  """
  index = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  return _fmix32(_fmix32(index + seed[0]) ^ seed[1])


def keep_mask(seed: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
  """Bool mask of `shape`, True with probability 1 - rate (to within 2^-32)."""
  return hash_bits(seed, shape) >= jnp.uint32(min(int(round(rate * 2 ** 32)), 2 ** 32 - 1))


def dropout(x: jax.Array, rate: float, seed: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when `seed` is None or rate is 0. `seed` comes from `KeySeq()`."""
  if seed is None or rate == 0.0:
    return x
  keep = keep_mask(seed, rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_path(x: jax.Array, rate: float, seed: jax.Array | None,
              second_pass: jax.Array | None = None) -> jax.Array:
  """Stochastic depth on a residual branch: one Bernoulli draw per sample (axis 0).

  `second_pass` ([B, R] bool, x [B, R, ...]): x holds the rows of two passes over one input that
  one layer computes together (`transformer.Rows`); each pass keeps its own independent draw per
  sample, as two separate passes would, and True rows take the second pass's.
  """
  if seed is None or rate == 0.0:
    return x
  if second_pass is None:
    keep = keep_mask(seed, rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  else:
    both = keep_mask(seed, rate, (x.shape[0], 2))
    keep = jnp.where(second_pass, both[:, 1:], both[:, :1])
    keep = keep.reshape(keep.shape + (1,) * (x.ndim - 2))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=TORCH_LN_EPS, rngs=rngs)


def linear(d_in: int, d_out: int, rngs: nnx.Rngs, kernel_init=None, bias_init=None,
           use_bias: bool = True) -> nnx.Linear:
  """nnx.Linear; initialisers not given are nn.Linear's defaults (`torch_uniform`, fan_in d_in)."""
  return nnx.Linear(d_in, d_out, use_bias=use_bias, rngs=rngs,
                    kernel_init=kernel_init or torch_uniform(),
                    bias_init=bias_init or torch_uniform(d_in), dot_general=matmul.DenseDot())


def clones(make, n: int) -> nnx.List:
  """`n` layers that start with equal parameters: `make()` once, then copies.

  The official stacks (encoders, decoder, SGCA, sentence pooling) are built by `get_clones`, a
  `copy.deepcopy` of one initialised layer, so every layer of a stack starts identical. The copies
  get their own arrays, so no two leaves of the model share a buffer (donation in the train step).
  """
  if n == 0:
    return nnx.List([])
  first = make()
  graphdef, state = nnx.split(first)
  return nnx.List([first] + [nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
                             for _ in range(n - 1)])


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
  """[B, L, H * d] -> [B, H, L, d]."""
  b, l, _ = x.shape
  return x.reshape(b, l, num_heads, -1).transpose(0, 2, 1, 3)


def merge_heads(x: jax.Array) -> jax.Array:
  """[B, H, L, d] -> [B, L, H * d]."""
  b, h, l, d = x.shape
  return x.transpose(0, 2, 1, 3).reshape(b, l, h * d)


def attention_core(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int, *,
                   key_mask: jax.Array | None = None, attn_mask: jax.Array | None = None,
                   gate: jax.Array | None = None, dropout_rate: float = 0.0,
                   key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Multi-head scaled dot-product attention with no projections (callers project).

  Args:
    q: [B, Lq, H * dk]; k: [B, Lk, H * dk]; v: [B, Lk, H * dv].
    num_heads: H.
    key_mask: [B, Lk] bool, True = valid key.
    attn_mask: [Lq, Lk] or [B, Lq, Lk] bool, True = blocked (group masks).
    gate: [B, Lq] multiplies the post-softmax weights of each query row (SGCA's sigma(S_local)).
    dropout_rate: attention-weight dropout.
    key: PRNG key for the dropout, or None.

  Returns:
    output [B, Lq, H * dv] (before any output projection) and the head-averaged,
    pre-dropout weights [B, Lq, Lk].
  """
  qh, kh, vh = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)
  logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh) / jnp.sqrt(qh.shape[-1]).astype(q.dtype)
  blocked = None
  if key_mask is not None:
    blocked = ~key_mask[:, None, None, :]
  if attn_mask is not None:
    am = attn_mask[None, None] if attn_mask.ndim == 2 else attn_mask[:, None]
    blocked = am if blocked is None else (blocked | am)
  if blocked is not None:
    logits = jnp.where(blocked, jnp.asarray(MASK_VALUE, logits.dtype), logits)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
  if gate is not None:
    weights = weights * gate[:, None, :, None].astype(weights.dtype)
  avg = weights.mean(axis=1)
  out = jnp.einsum("bhqk,bhkd->bhqd", dropout(weights, dropout_rate, key), vh)
  return merge_heads(out), avg


class PReLU(nnx.Module):
  """torch.nn.PReLU with a single learnable slope."""

  def __init__(self, init: float = 0.25):
    self.weight = nnx.Param(jnp.full((1,), init, jnp.float32))

  def __call__(self, x):
    return jnp.where(x >= 0, x, self.weight[...].astype(x.dtype) * x)


class FFN(nnx.Module):
  """Lin(d -> e*d) -> PReLU -> Dropout -> Lin(e*d -> d) (official `FeedForwardNetwork`).

  Its own init: xavier with the leaky-ReLU(0.25) gain, then xavier(1); zero biases. (The official
  encoder / decoder layers re-init their >1-d parameters with xavier(1) *before* they build the FFN,
  so this init is what survives; the sentence-pooling layer overrides it, see local_saliency.)
  """

  def __init__(self, dim: int, hidden: int, dropout_rate: float, rngs: nnx.Rngs,
               kernel_init1=None, kernel_init2=None):
    slope = 0.25
    self.linear1 = linear(dim, hidden, rngs, kernel_init1 or xavier_uniform(leaky_relu_gain(slope)),
                          jax.nn.initializers.zeros)
    self.act = PReLU(slope)
    self.linear2 = linear(hidden, dim, rngs, kernel_init2 or xavier_uniform(1.0),
                          jax.nn.initializers.zeros)
    self.dropout_rate = dropout_rate

  def __call__(self, x, key=None):
    return self.linear2(dropout(self.act(self.linear1(x)), self.dropout_rate, key))


class MLP(nnx.Module):
  """Linear layers with ReLU between them (official `SlimMLP`: linear_mapper.{0,2,4}).

  Init as `SlimMLP._init_parameters` ends up: xavier with the ReLU gain sqrt(2) for *every* layer,
  the last one included (its loop over `linear_mapper[:-1]` only leaves out the trailing Identity),
  and zero biases; `zero_last` zeroes the last layer (the span heads' `init_spans_with_zeros`).
  """

  def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int, rngs: nnx.Rngs,
               zero_last: bool = False, kernel_init=None):
    dims = [d_in] + [d_hidden] * (num_layers - 1) + [d_out]
    kernel_init = kernel_init or xavier_uniform(math.sqrt(2.0))
    zeros = jax.nn.initializers.zeros
    layers = []
    for i in range(num_layers):
      last = i == num_layers - 1
      init = zeros if (last and zero_last) else kernel_init
      layers.append(linear(dims[i], dims[i + 1], rngs, init, zeros))
    self.layers = nnx.List(layers)

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.relu(x)
    return x


def sine_position_embedding(mask: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
  """DETR-style normalised sine embedding of valid positions, interleaved sin / cos.

  Args:
    mask: [B, L] bool, True = valid.
    dim: embedding width (even).

  Returns:
    [B, L, dim]; position t gets x_t = 2 pi cumsum(mask)_t / (cumsum_last + 1e-6).
  """
  csum = jnp.cumsum(mask.astype(jnp.float32), axis=1)
  x = csum / (csum[:, -1:] + 1e-6) * 2 * math.pi
  return _interleaved_sine(x, dim, temperature)


def _interleaved_sine(x: jax.Array, dim: int, temperature: float) -> jax.Array:
  """[..., ] positions -> [..., dim] with sin at even and cos at odd features."""
  k = jnp.arange(dim // 2, dtype=jnp.float32)
  freq = temperature ** (2 * k / dim)
  angles = x[..., None] / freq
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*x.shape, dim)


def span_sine_embedding(spans: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
  """Sine embedding of (center, width) references: [..., 2] -> [..., dim] = [PE(c); PE(w)].

  Each coordinate is scaled by 2 pi and embedded in dim / 2 interleaved features.
  """
  half = dim // 2
  c = _interleaved_sine(spans[..., 0] * 2 * math.pi, half, temperature)
  w = _interleaved_sine(spans[..., 1] * 2 * math.pi, half, temperature)
  return jnp.concatenate([c, w], axis=-1)


def inverse_sigmoid(x: jax.Array, eps: float = 1e-3) -> jax.Array:
  """log(x / (1 - x)) with x clipped to [0, 1] and both terms clamped at eps."""
  x = jnp.clip(x, 0.0, 1.0)
  return jnp.log(jnp.maximum(x, eps) / jnp.maximum(1 - x, eps))


def probe(module: nnx.Module, name: str, value) -> None:
  """Sows `value` as an `nnx.Intermediate` of `module`, under `nnx.capture` only.

  The golden tests read the stages' outputs this way; otherwise it does nothing, so a model built
  outside a transform can still be traced (eval_shape, jit) without a stateful side effect.
  """
  if hasattr(module, "__captures__"):
    module.sow(nnx.Intermediate, name, value)


def l2_normalize(x: jax.Array, eps: float = 1e-12, zero_grad_at_zero: bool = False) -> jax.Array:
  """x / max(||x||, eps) along the last axis, as torch's F.normalize (the official model).

  At an all-zero vector the value is 0 and, as in torch, the gradient is 1 / eps = 1e12 times the
  incoming one (the norm itself gets a zero gradient there instead of jnp.linalg.norm's NaN).
  Padded clips project to exactly zero at the official initialisation (zero features, zero
  input-projection biases), so the official first step sees a ~1e12 gradient on the video
  projection's biases that the 0.1 clipping absorbs. `zero_grad_at_zero=True` returns a zero
  gradient there instead (`model.l2norm_zero_grad`).
  """
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  nonzero = sq > eps * eps
  norm = jnp.sqrt(jnp.where(nonzero, sq, 1.0))
  if zero_grad_at_zero:
    return jnp.where(nonzero, x / norm, 0.0)
  return x / jnp.where(nonzero, norm, eps)


# How a dense stride-1 kernel-3 Conv1D multiplies (`model.conv_algorithm`; see Conv1D).
CONV_ALGORITHMS = ("direct", "winograd")


class Conv1D(nnx.Module):
  """Conv1d, kernel 3 (or 1), padding k // 2, channels-last: [B, L, d_in] -> [B, ceil(L / s), d_out].

  The parameter layout (`kernel` [k, d_in / groups, d_out], `bias` [d_out]) is that of `nnx.Conv`,
  so checkpoints and the official-name table do not depend on how it is computed. How it is
  computed was measured on a 2-core CPU (fwd + bwd of the ATSS head's [32, 152, 256] level): a
  dense stride-1 conv is `matmul.conv1d` (XLA's convolution in fp32, one product per tap with bf16
  operands, and a hand-written backward: XLA's own kernel gradient transposes the input first;
  the former "one GEMM with all taps, then a sum of shifted slices" took 91 ms against 32 ms), a
  1x1 conv is a `matmul.dense` product, and the
  depthwise one (`groups == d_in == d_out`) is three shifted multiply-adds (6.5 ms; XLA's grouped
  conv took 128 ms). `dot_general` (a `matmul.DenseDot`) carries the products' operand dtype.
  `algorithm="winograd"` computes a dense stride-1 kernel-3 conv with `winograd.conv1d` instead
  (half the products, not bitwise the direct sum; `model.conv_algorithm`).
  """

  def __init__(self, d_in: int, d_out: int, rngs: nnx.Rngs, *, stride: int = 1,
               depthwise: bool = False, use_bias: bool = True, kernel_init=None, bias_init=None,
               kernel_size: int = 3, algorithm: str = "direct"):
    if algorithm not in CONV_ALGORITHMS:
      raise ValueError(f"model.conv_algorithm must be one of {CONV_ALGORITHMS}, got {algorithm!r}")
    shape = (kernel_size, 1 if depthwise else d_in, d_out)
    # torch's nn.Conv1d defaults unless given: U(+-1 / sqrt(fan_in)), fan_in = in / groups * k.
    self.kernel = nnx.Param((kernel_init or torch_uniform())(rngs.params(), shape))
    if use_bias:
      fan_in = shape[0] * shape[1]
      self.bias = nnx.Param((bias_init or torch_uniform(fan_in))(rngs.params(), (d_out,)))
    self.use_bias, self.stride, self.depthwise = use_bias, stride, depthwise
    self.algorithm = algorithm
    self.dot_general = matmul.DenseDot()  # its products' operand dtype (`set_operand_dtype`)

  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel[...].astype(x.dtype)
    size, length, pad = k.shape[0], x.shape[1], k.shape[0] // 2
    if self.depthwise:
      xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0)))
      y = sum(xp[:, i:i + length] * k[i, 0] for i in range(size))
      if self.stride > 1:  # every second stride-1 output: the same as a strided conv for k = 3
        y = y[:, ::self.stride]
    elif size == 1:
      y = matmul.dense(x[:, ::self.stride], k[0], self.dot_general.operand_dtype)
    elif self.stride == 1:
      conv = winograd.conv1d if self.algorithm == "winograd" and size == 3 else matmul.conv1d
      y = conv(x, k, self.dot_general.operand_dtype)
    else:
      y = jax.lax.conv_general_dilated(x, k, (self.stride,), [(pad, pad)],
                                       dimension_numbers=("NWC", "WIO", "NWC"))
    if self.use_bias:
      y = y + self.bias[...].astype(y.dtype)
    return y
