"""inference/overlap.py: results in order, later items launched before an item is finished."""

import pytest

from sg_detr_jax.inference.overlap import overlapped


def _run(n, ahead):
  events = []

  def items():
    for i in range(n):
      events.append(("read", i))
      yield i

  def launch(i):
    events.append(("launch", i))
    return i * 10

  def finish(i, handle):
    events.append(("finish", i))
    return (i, handle)

  return list(overlapped(items(), launch, finish, ahead)), events


@pytest.mark.parametrize("ahead", [0, 1, 2, 7])
def test_results_in_order_each_launched_once(ahead):
  results, events = _run(5, ahead)
  assert results == [(i, 10 * i) for i in range(5)]
  assert [i for e, i in events if e == "launch"] == list(range(5))
  assert [i for e, i in events if e == "finish"] == list(range(5))


@pytest.mark.parametrize("ahead", [0, 1, 2])
def test_items_ahead_are_read_and_launched_before_finishing(ahead):
  _, events = _run(5, ahead)
  for i in range(5):
    done = events.index(("finish", i))
    before = {j for e, j in events[:done] if e == "launch"}
    # everything up to i + ahead is in flight when i is finished, nothing later
    assert before == set(range(min(i + ahead, 4) + 1))
    assert events.index(("launch", i)) < done


def test_strict_alternation_without_lookahead():
  _, events = _run(3, 0)
  assert events == [("read", 0), ("launch", 0), ("finish", 0), ("read", 1), ("launch", 1),
                    ("finish", 1), ("read", 2), ("launch", 2), ("finish", 2)]


def test_empty_and_bad_lookahead():
  assert list(overlapped([], lambda i: i, lambda i, h: h, 1)) == []
  with pytest.raises(ValueError, match="ahead"):
    list(overlapped([1], lambda i: i, lambda i, h: h, -1))


def test_training_refuses_a_negative_lookahead_before_it_starts(tmp_path):
  """The evaluation's look-ahead is checked when training starts, not at its first evaluation."""
  from conftest import tiny_config
  from sg_detr_jax.training.loop import train_and_evaluate
  c = tiny_config()
  c.train.eval_batches_ahead = -1
  with pytest.raises(ValueError, match="eval_batches_ahead must be >= 0"):
    train_and_evaluate(c, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()  # nothing was started
