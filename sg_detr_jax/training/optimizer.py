"""AdamW with global-norm clipping and the per-epoch learning-rate schedule (architecture.md §7).

The official scheduler is stepped once per epoch: lr(e) = init + (e / E_w)(lr - init) for e < E_w,
then lr * gamma^(number of milestones <= e). Step counts come from the dataset size at run time.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def epoch_schedule(optim_cfg, steps_per_epoch: int):
  """optax schedule: step -> lr, constant within an epoch."""
  lr, init, warm = optim_cfg.lr, optim_cfg.warmup_init_lr, optim_cfg.warmup_epochs
  milestones = jnp.asarray(optim_cfg.milestones or (), jnp.int32)

  def schedule(step):
    epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
    warm_lr = init + (epoch / max(warm, 1)) * (lr - init)
    decay = optim_cfg.gamma ** jnp.sum(epoch >= milestones) if milestones.size else 1.0
    return jnp.where(epoch < warm, warm_lr, lr * decay)

  schedule.steps_per_epoch = steps_per_epoch  # with config.optim, all the schedule depends on
  return schedule


def make_optimizer(optim_cfg, steps_per_epoch: int) -> tuple[optax.GradientTransformation, callable]:
  """clip_by_global_norm -> AdamW (decoupled decay on every parameter, as torch.optim.AdamW)."""
  schedule = epoch_schedule(optim_cfg, steps_per_epoch)
  tx = optax.chain(
      optax.clip_by_global_norm(optim_cfg.grad_clip),
      optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                  weight_decay=optim_cfg.weight_decay))
  return tx, schedule
