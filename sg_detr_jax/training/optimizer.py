"""AdamW with global-norm clipping and the per-epoch learning-rate schedule (architecture.md §7).

The official scheduler is stepped once per epoch: lr(e) = init + (e / E_w)(lr - init) for e < E_w,
then lr * gamma^(number of milestones in (E_w, e]). Step counts come from the dataset size at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sg_detr_jax.models import param_map
from sg_detr_jax.models.sg_detr import SGDETR


def epoch_schedule(optim_cfg, steps_per_epoch: int):
  """optax schedule: step -> lr, constant within an epoch."""
  lr, init, warm = optim_cfg.lr, optim_cfg.warmup_init_lr, optim_cfg.warmup_epochs
  # The official WarmupMultiStepLR is chainable: a milestone inside the warm-up is never applied.
  milestones = jnp.asarray([m for m in optim_cfg.milestones or () if m > warm], jnp.int32)

  def schedule(step):
    epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
    warm_lr = init + (epoch / max(warm, 1)) * (lr - init)
    decay = optim_cfg.gamma ** jnp.sum(epoch >= milestones) if milestones.size else 1.0
    return jnp.where(epoch < warm, warm_lr, lr * decay)

  schedule.steps_per_epoch = steps_per_epoch  # with config.optim, all the schedule depends on
  return schedule


def _under(prefixes):
  """params -> bool pytree: the leaf's dotted path is, or is inside, one of `prefixes`."""
  def mask(params):
    def inside(path, _):
      name = param_map.dotted(path)
      return any(name == p or name.startswith(p + ".") for p in prefixes)
    return jax.tree_util.tree_map_with_path(inside, params)
  return mask


def make_optimizer(optim_cfg, steps_per_epoch: int, frozen: tuple[str, ...] = ()
                   ) -> tuple[optax.GradientTransformation, callable]:
  """clip_by_global_norm -> AdamW (decoupled decay, as torch.optim.AdamW), two parameter groups.

  The official optimizer has a group of its own for `local_saliency_head.*`, whose weight decay is
  fixed (`optim.local_saliency_weight_decay`, 0.1) whatever the config's `weight_decay` is (the
  fine-tuning config lowers only the latter).

  `frozen`: dotted parameter prefixes (e.g. "txt_position_embed") that have no gradient path in
  the training loss. torch.optim.AdamW skips a parameter whose `.grad` is None, weight decay
  included; optax would still decay it, so these get `optax.set_to_zero` through
  `optax.multi_transform` and stay exactly as they are.
  """
  schedule = epoch_schedule(optim_cfg, steps_per_epoch)
  local = _under(("local_saliency_head",))
  tx = optax.chain(
      optax.clip_by_global_norm(optim_cfg.grad_clip),
      optax.scale_by_adam(b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps),
      optax.add_decayed_weights(optim_cfg.local_saliency_weight_decay, mask=local),
      optax.add_decayed_weights(
          optim_cfg.weight_decay,
          mask=lambda p: jax.tree_util.tree_map(lambda x: not x, local(p))),
      optax.scale_by_learning_rate(schedule))
  if frozen:
    frozen_mask = _under(frozen)
    labels = lambda p: jax.tree_util.tree_map(lambda f: "frozen" if f else "train", frozen_mask(p))
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule


def make_model_optimizer(config, steps_per_epoch: int
                         ) -> tuple[optax.GradientTransformation, callable]:
  """`make_optimizer` for SG-DETR trained with `config`: its no-gradient parameters frozen."""
  return make_optimizer(config.optim, steps_per_epoch, SGDETR.params_without_gradient())
