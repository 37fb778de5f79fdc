"""Highlight-detection losses, eq. (11) (architecture.md §6.1), for one saliency head.

All inputs are [B, L] logits / labels with the valid-clip mask; `real_neg` [B] marks samples whose
rolled text partner comes from another video (their negative-pass scores are used).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def real_negatives(source_id, batch_mask):
  """[B] bool: row b's rolled text partner (row b + 1 mod B) is a real negative.

  The negative-text pass rolls the text over the whole (global, possibly sharded) batch, so the
  flags are computed here, on the same global arrays, not per host: a pair counts when the two
  rows come from different source videos and both are real rows (not eval padding).

  Args:
    source_id: [B] int, a hash of each row's source video; batch_mask: [B] bool.
  """
  nxt = lambda x: jnp.roll(x, -1, axis=0)
  mask = batch_mask.astype(bool)
  return (source_id != nxt(source_id)) & mask & nxt(mask)


def _masked_mean(x, mask):
  mask = mask.astype(x.dtype)
  return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def bce(logits, labels, mask):
  """mean over valid clips of BCE(s, 1[y > 0])."""
  target = (labels > 0).astype(logits.dtype)
  return _masked_mean(optax.sigmoid_binary_cross_entropy(logits, target), mask)


def negative_pair(neg_logits, mask, real_neg, eps):
  """mean over valid clips of real-negative samples of -log(max(1 - sigmoid(s_neg), eps))."""
  loss = -jnp.log(jnp.maximum(1 - jax.nn.sigmoid(neg_logits), eps))
  return _masked_mean(loss, mask & real_neg[:, None])


def margin_ranking(logits, pos_idx, neg_idx, margin):
  """(2 / (B P)) sum max(0, margin + sigmoid(s[neg]) - sigmoid(s[pos]))."""
  p = jax.nn.sigmoid(jnp.take_along_axis(logits, pos_idx, axis=1))
  n = jax.nn.sigmoid(jnp.take_along_axis(logits, neg_idx, axis=1))
  return 2 * jnp.maximum(0.0, margin + n - p).mean()


def rank_contrastive(scores, labels, mask, rows, tau, levels):
  """Rank-contrastive loss (QD-DETR / CG-DETR) over the selected rows.

  Args:
    scores: [B, M]; labels: [B, M] graded labels; mask: [B, M] bool valid entries.
    rows: [B] bool, the rows this term averages over.
    tau: temperature; levels: thresholds r = 1 .. levels - 1, the sum divided by `levels`.

  Returns:
    sum_r mean_{rows}(-(1/|P_r|) sum_{t in P_r} log softmax_t) / levels, where thresholds with no
    positive in the selected rows are skipped and rows without positives count as 0.
  """
  logits = jnp.where(mask, scores, -1e3) / tau
  logits = logits - logits.max(axis=1, keepdims=True)  # the official max carries gradient too
  log_p = logits - jnp.log(jnp.exp(logits).sum(axis=1, keepdims=True) + 1e-6)
  num_rows = jnp.maximum(rows.sum(), 1)
  total = 0.0
  for r in range(1, levels):
    pos = (labels >= r) & rows[:, None]
    count = pos.sum(axis=1)
    a = (jnp.where(pos & mask, log_p, 0.0)).sum(axis=1) / (count + 1e-6)
    term = -(a * (count > 0)).sum() / num_rows
    total = total + jnp.where(pos.any(), term, 0.0)
  return total / levels


def lone_row_rank_contrastive(labels, mask, levels, grid_len):
  """What the official rank-contrastive code computes for EXACTLY ONE false-negative row.

  The official code selects that row with `unsqueeze(0)`, so its softmax runs over an axis of size
  one: every log-probability is -log(1 + 1e-6) and the row contributes
  sum_r mean_t(1[y_t >= r] m_t log(1 + 1e-6) / (1 + 1e-6)) / levels, about 1e-7, over the batch's
  padded length `grid_len`; its gradient is exactly zero. (With two or more such rows the loss
  is computed in full.)

  Args:
    labels: [L] graded labels of the row; mask: [L] bool valid clips; grid_len: scalar, the
      batch's padded length (the official tensors' length).
  """
  one_plus = jnp.float32(1.0) + jnp.float32(1e-6)  # rounds to 1.00000095 in float32, as in torch
  c = jax.lax.stop_gradient(jnp.log(one_plus) / one_plus)
  total = 0.0
  for r in range(1, levels):
    total = total + c * ((labels >= r) & mask).sum() / grid_len
  return total / levels


def saliency_losses(s, s_neg, y, mask, pos_idx, neg_idx, real_neg, lw) -> dict:
  """The four HD terms of one head: {"bce", "neg", "margin", "rank"}.

  The rank-contrastive term joins each real-negative row with its negative-pass scores (labels 0)
  and averages those rows; the other rows use their own scores alone (the official split). With
  `lw.rank_lone_false_negative == "official"`, a batch with exactly one false-negative row gets
  the official near-zero value for it (see `lone_row_rank_contrastive`); "full" computes it.
  """
  scores = jnp.concatenate([s, s_neg], axis=1)
  labels = jnp.concatenate([y, jnp.zeros_like(y)], axis=1)
  cat_mask = jnp.concatenate([mask, mask & real_neg[:, None]], axis=1)
  false_neg = ~real_neg
  rank_false = rank_contrastive(scores, labels, cat_mask, false_neg, lw.rank_tau, lw.rank_levels)
  if lw.rank_lone_false_negative == "official":
    lone = jnp.argmax(false_neg)
    grid_len = mask.sum(axis=1).max().astype(jnp.float32)
    rank_false = jnp.where(false_neg.sum() == 1,
                           lone_row_rank_contrastive(y[lone], mask[lone], lw.rank_levels, grid_len),
                           rank_false)
  elif lw.rank_lone_false_negative != "full":
    raise ValueError("loss.rank_lone_false_negative must be 'official' or 'full', got "
                     f"{lw.rank_lone_false_negative!r}")
  rank = rank_contrastive(scores, labels, cat_mask, real_neg, lw.rank_tau, lw.rank_levels)
  return {
      "bce": bce(s, y, mask),
      "neg": negative_pair(s_neg, mask, real_neg, lw.neg_eps),
      "margin": margin_ranking(s, pos_idx, neg_idx, lw.saliency_margin),
      "rank": rank + rank_false,
  }
