"""Host work on one batch while the accelerator computes the next ones.

JAX dispatches a jitted call and returns before the device has finished it. Inference over a split
alternates a device forward with host work (reading its outputs, post-processing them into the
official lists); done strictly in turn, the device idles during the host's share and the host
during the device's. Launching the forward of batch n + 1 before finishing batch n overlaps them:
on an H200 the host post-processing was two thirds of the inference time of one batch.
"""

from __future__ import annotations

import collections
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Handle = TypeVar("Handle")
Result = TypeVar("Result")


def batches_ahead(config) -> int:
  """`config.train.eval_batches_ahead`, checked: the `ahead` of the evaluation's `overlapped` (1 for
  the config.json of a workdir saved before the field existed)."""
  ahead = config.train.get("eval_batches_ahead", 1)
  if ahead < 0:
    raise ValueError(f"config.train.eval_batches_ahead must be >= 0, not {ahead}")
  return ahead


def overlapped(items: Iterable[Item], launch: Callable[[Item], Handle],
               finish: Callable[[Item, Handle], Result], ahead: int = 1) -> Iterator[Result]:
  """Yields `finish(item, launch(item))` for every item, in order, with up to `ahead` later items
  launched before an item is finished.

  Args:
    items: the inputs (e.g. host batches), consumed lazily: item n + ahead is read (and launched)
      before item n is finished.
    launch: starts the work of one item and returns without waiting for it (a jitted call, whose
      outputs are futures).
    finish: waits for the item's work and does the host part (e.g. `jax.device_get` and
      post-processing).
    ahead: items in flight beyond the one being finished; 0 = launch, finish, launch, finish.
  """
  if ahead < 0:
    raise ValueError(f"ahead must be >= 0, not {ahead}")
  pending = collections.deque()
  for item in items:
    pending.append((item, launch(item)))
    if len(pending) > ahead:
      yield finish(*pending.popleft())
  while pending:
    yield finish(*pending.popleft())
