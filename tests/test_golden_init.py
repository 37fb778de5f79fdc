"""The initialisation equals the official one, tensor by tensor.

`official_golden/init_stats.json` holds, for every tensor of the official model's state_dict (the
QVHighlights config at full width, d_model 256, 13,472,294 parameters), the shape, mean, std, min,
max and fraction of exact zeros right after construction, each averaged over torch seeds 0, 1, 2.
We build our model for seeds 0, 1, 2, export it to the official names and layouts, average the same
statistics over the seeds and require, per tensor:

  * the same shape;
  * constant tensors (official std 0: LayerNorm 1 / 0, zero biases, zero-init heads,
    prior-prob biases, PReLU 0.25, scales, temp) equal to the official constant in every seed;
  * the same fraction of exact zeros (to 0.01);
  * the std within max(10 %, 4.5 sigma) of the official. sigma is the standard error of the
    ratio of two 3-seed means of sample stds of n values: a sample std has relative s.e.
    sqrt((k - 1) / 4n) for kurtosis k, at most 1 / sqrt(2n) for the normal and uniform draws here,
    so the ratio has about 1 / sqrt(3n). 10 % governs from n = 675 up; the smallest random
    tensors (n = 256: [1, 256] heads, biases, cls_q) get 16 %;
  * the mean within 6 standard errors (official std * sqrt(2 / 3n)) of the official mean;
  * the same family, bounded (uniform: max |x| / std <= sqrt(3)) or not (normal: max |x| of
    n >= 256 draws is > 2 std but with probability ~1e-5), read from max |x| / std < 2;
  * for the bounded (uniform) ones, the same bound: max |x| within 5 % of the official (a uniform
    sample's extremes sit within ~1 / n of the bound, so this pins the scale more tightly than the
    std does for small n).
  Random tensors with fewer than 64 values would only get the std bound (family and bound are not
  identifiable from so few draws); the QVHighlights model has none.

The official stacks (encoder, decoder, SGCA and pooling layers) are deep copies of one initialised
layer, so their layers start identical (the statistics agree to the last digit); ours must too, and
layers the official code draws separately (the ATSS stem convs) must differ.
"""

import collections
import json
import math
import os
import re

import numpy as np
import pytest

from tests.conftest import SHARED

GOLDEN = os.path.join(SHARED, "reference", "official_golden", "init_stats.json")
SEEDS = (0, 1, 2)
TINY = 64

pytestmark = pytest.mark.skipif(not os.path.isfile(GOLDEN),
                                reason=f"official init statistics missing: {GOLDEN}")


def official_stats() -> dict:
  with open(GOLDEN) as f:
    return json.load(f)["params"]


def export(seed: int) -> dict[str, np.ndarray]:
  """Our full-width QVHighlights model built with `seed`, in the official names and layouts."""
  from flax import nnx

  from configs import qvhighlights
  from sg_detr_jax.models import sg_detr
  from sg_detr_jax.porting import convert

  config = qvhighlights.get_config()
  model = sg_detr.create(config, rng_seed=seed)
  return convert.to_official(nnx.state(model, nnx.Param), config.model)


def tensor_stats(x: np.ndarray) -> dict:
  x = np.asarray(x, np.float64)
  return {"shape": list(x.shape), "mean": float(x.mean()), "std": float(x.std()),
          "min": float(x.min()), "max": float(x.max()), "frac_zero": float((x == 0).mean())}


def stack_groups(keys) -> dict[str, list[str]]:
  """Keys that differ only in a `layers.<i>.` index, grouped by the pattern (2+ members)."""
  groups = collections.defaultdict(list)
  for key in keys:
    pattern = re.sub(r"layers\.\d+\.", "layers.*.", key)
    if pattern != key:
      groups[pattern].append(key)
  return {p: ks for p, ks in groups.items() if len(ks) > 1}


def _bound(s: dict) -> float:
  return max(abs(s["min"]), abs(s["max"]))


def mismatches(gold: dict, ours: dict) -> list[tuple[str, int, str]]:
  """(key, numel, reason) for every official tensor whose init differs; `ours` maps each key to
  the statistics averaged over the seeds plus per-seed "min_seeds" / "max_seeds"."""
  out = []
  for key, g in gold.items():
    numel = math.prod(g["shape"])
    o = ours.get(key)
    if o is None:
      out.append((key, numel, "missing"))
      continue
    reasons = []
    if o["shape"] != g["shape"]:
      reasons.append(f"shape {o['shape']} != {g['shape']}")
    elif g["std"] == 0:
      const = g["min"]
      if not all(math.isclose(v, const, rel_tol=1e-6, abs_tol=1e-7)
                 for v in o["min_seeds"] + o["max_seeds"]):
        reasons.append(f"not the constant {const:.6g}: range [{min(o['min_seeds']):.4g}, "
                       f"{max(o['max_seeds']):.4g}]")
    else:
      if abs(o["frac_zero"] - g["frac_zero"]) > 0.01:
        reasons.append(f"zeros {o['frac_zero']:.3f} vs {g['frac_zero']:.3f}")
      if o["std"] == 0:
        reasons.append(f"constant {o['min']:.4g}, official std {g['std']:.4g}")
      else:
        tol = max(0.10, 4.5 / math.sqrt(len(SEEDS) * numel))
        ratio = o["std"] / g["std"]
        if abs(ratio - 1) > tol:
          reasons.append(f"std x{ratio:.3f} ({o['std']:.4g} vs {g['std']:.4g}, tol {tol:.2f})")
        mean_se = g["std"] * math.sqrt(2 / (len(SEEDS) * numel))
        if abs(o["mean"] - g["mean"]) > 6 * mean_se:
          reasons.append(f"mean {o['mean']:.3g} vs {g['mean']:.3g}")
        if numel >= TINY:
          g_bounded, o_bounded = _bound(g) / g["std"] < 2, _bound(o) / o["std"] < 2
          if g_bounded != o_bounded:
            family = {True: "uniform", False: "normal"}
            reasons.append(f"{family[o_bounded]}-like, official {family[g_bounded]}-like "
                           f"(max|x| / std {_bound(o) / o['std']:.2f} vs "
                           f"{_bound(g) / g['std']:.2f})")
          elif g_bounded and abs(_bound(o) / _bound(g) - 1) > 0.05:
            reasons.append(f"bound {_bound(o):.4g} vs {_bound(g):.4g}")
    if reasons:
      out.append((key, numel, "; ".join(reasons)))
  return out


@pytest.fixture(scope="module")
def measured():
  """(statistics averaged over the seeds, {stack pattern: equal in every seed}, exported keys)."""
  gold = official_stats()
  groups = stack_groups(gold)
  per_key = collections.defaultdict(list)
  equal = {p: True for p in groups}
  keys = None
  for seed in SEEDS:
    sd = export(seed)
    keys = set(sd)
    for key, value in sd.items():
      per_key[key].append(tensor_stats(value))
    for pattern, members in groups.items():
      if not all(m in sd for m in members):
        continue
      first = sd[members[0]]
      equal[pattern] &= all(sd[m].shape == first.shape and np.array_equal(sd[m], first)
                            for m in members[1:])
    del sd
  ours = {}
  for key, seeds in per_key.items():
    avg = {k: float(np.mean([s[k] for s in seeds])) for k in ("mean", "std", "min", "max",
                                                                 "frac_zero")}
    ours[key] = dict(avg, shape=seeds[0]["shape"], min_seeds=[s["min"] for s in seeds],
                     max_seeds=[s["max"] for s in seeds])
  return ours, equal, keys


def test_every_official_tensor_starts_like_the_official_one(measured):
  ours, _, keys = measured
  gold = official_stats()
  assert len(gold) == 359
  assert sum(math.prod(g["shape"]) for g in gold.values()) == 13_472_294
  # Beyond the official parameters the export only holds the ATSS anchor buffers.
  assert all(".cell_anchors." in k for k in keys - set(gold)), sorted(keys - set(gold))
  bad = mismatches(gold, ours)
  assert not bad, (f"{len(bad)} tensors ({sum(n for _, n, _ in bad):,} values) start unlike the "
                   "official ones:\n" + "\n".join(f"  {k} [{n}]: {r}" for k, n, r in bad))


def test_stacked_layers_start_identical_as_the_official_deep_copies(measured):
  _, equal, _ = measured
  gold = official_stats()
  wrong = []
  for pattern, members in stack_groups(gold).items():
    if all(gold[m]["std"] == 0 for m in members):
      continue  # constants: equal either way
    stats = ("mean", "std", "min", "max")
    official_equal = all(all(gold[m][s] == gold[members[0]][s] for s in stats)
                         for m in members[1:])
    if equal[pattern] != official_equal:
      wrong.append(f"{pattern}: ours {'equal' if equal[pattern] else 'different'}, official "
                   f"{'equal' if official_equal else 'different'}")
  assert not wrong, "\n".join(wrong)
