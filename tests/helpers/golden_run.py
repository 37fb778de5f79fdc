"""Runs our model on the official golden inputs in its own process; tests/test_golden_official.py
asserts on what it writes (started with the test session by tests/conftest.py, so its compiles use
the core the rest of the suite leaves idle).

  python tests/helpers/golden_run.py OUT_DIR

The official weights (`weights.pt`, width 64) go through the porting user's path:
`launch.convert_torch` writes an orbax workdir and the params are restored from it. Writes to
OUT_DIR:
  forward.npz     the eval-mode forward on inputs.npz: our outputs (`out/<key>`) and the
                  intermediates our stages sow under nnx.capture (`inter/<path>`)
  loss.json       per variant ("main", "FFTT"): total, unweighted terms, the real_neg flags our
                  source-video rule gives, the weighted sum of the terms
  grads.npz       d(main total)/d(params), official names and layouts
  after.npz       the parameters after one AdamW step at the official warm-up lr (official names)
  before.npz      the converted parameters (official names)
  params.json     the number of converted parameters and the AdamW step's lr
  bf16.npz        with `model.matmul_dtype=bfloat16` (bf16 product operands, fp32 accumulation):
                  the forward's outputs (`out/<key>`) and d(main total)/d(params) (`grad/<name>`)
  winograd.npz    the forward's outputs with `model.conv_algorithm=winograd` (ATSS stems as F(4, 3))
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.chdir(REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from launch import cli  # noqa: E402
from launch.convert_torch import convert  # noqa: E402
from sg_detr_jax.data.datasets import get_spec, source_id  # noqa: E402
from sg_detr_jax.losses.saliency import real_negatives  # noqa: E402
from sg_detr_jax.losses.total import compute_losses, weights_table  # noqa: E402
from sg_detr_jax.models import atss  # noqa: E402
from sg_detr_jax.porting import convert as convert_lib  # noqa: E402
from sg_detr_jax.training import steps as steps_lib  # noqa: E402
from sg_detr_jax.training.checkpoints import load_params  # noqa: E402
from sg_detr_jax.training.loop import build  # noqa: E402
from sg_detr_jax.training.optimizer import make_optimizer  # noqa: E402

SHARED = os.environ.get("SG_DETR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
GOLDEN = os.path.join(SHARED, "reference", "official_golden")
OVERRIDES = ["--config.model.d_model=64", "--config.model.ffn_dim=256",
             "--config.model.num_heads=8",
             # eval mode: the golden losses and gradients were taken with model.eval()
             "--config.model.dropout=0.0", "--config.model.drop_path=0.0",
             "--config.model.input_dropout=0.0"]


def loss_batch(lb, vids, max_windows):
  """The official collated training batch in our batch layout (windows padded to max_windows);
  `vids`: the rows' video names, whose source videos decide the negative pairs."""
  spec = get_spec("qvhighlights")
  b = len(lb["span_counts"])
  spans = np.zeros((b, max_windows, 2), np.float32)
  spans[:, :lb["span_labels_cxw"].shape[1]] = lb["span_labels_cxw"]
  return {
      "video": lb["src_vid"], "video_mask": lb["src_vid_mask"] > 0,
      "text": lb["src_txt"], "text_mask": lb["src_txt_mask"] > 0,
      "spans": spans, "span_mask": np.arange(max_windows)[None] < lb["span_counts"][:, None],
      "saliency": lb["saliency_all_labels"],
      "pos_idx": lb["saliency_pos_labels"].astype(np.int32),
      "neg_idx": lb["saliency_neg_labels"].astype(np.int32),
      "source_id": np.array([source_id(v, spec) for v in vids], np.int32),
      "span_seconds": lb["duration"], "duration": lb["duration"],
      "clip_len": np.full(b, 2.0, np.float32), "num_clips": lb["num_real_clips"],
      "batch_mask": np.ones(b, bool),
  }


def _flat(tree, prefix):
  """{prefix/a/b/0: array} of a nested dict / tuple / dataclass of arrays."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    out["/".join([prefix] + keys)] = np.asarray(leaf)
  return out


def main(out_dir):
  os.makedirs(out_dir, exist_ok=True)
  config = cli.load_config("configs/qvhighlights.py", OVERRIDES)
  workdir = os.path.join(out_dir, "from_torch")
  n = convert(os.path.join(GOLDEN, "weights.pt"), config, workdir)
  graphdef, state, _, _ = build(config, 1)
  _, params = load_params(workdir, state["params"], "latest")

  # Eval-mode forward with the stages' intermediates (sown under nnx.capture, inside the jit).
  inputs = np.load(os.path.join(GOLDEN, "inputs.npz"))
  batch = {"video": inputs["src_vid"], "video_mask": inputs["src_vid_mask"] > 0,
           "text": inputs["src_txt"], "text_mask": inputs["src_txt_mask"] > 0}
  forward = jax.jit(lambda p, b: nnx.capture(nnx.merge(graphdef, p), nnx.Intermediate)(b))
  out, inter = jax.device_get(forward(params, batch))
  np.savez(os.path.join(out_dir, "forward.npz"),
           **_flat(out, "out"), **_flat(nnx.to_pure_dict(inter), "inter"))

  # Eval-mode training loss: no dropout and no collab query group (training-only officially).
  loss_config = config.copy_and_resolve_references()
  loss_config.model.collab = False

  def loss_of(graph):
    def loss_fn(p, b):
      model = nnx.merge(graph, p)  # the trained graph (collab mapper included), run without it
      model.cfg = ml_collections.FrozenConfigDict(loss_config.model)
      targets = atss.training_targets(b, loss_config.model)
      out = model(b, key=jax.random.key(0), train=True, atss_targets=targets)
      return compute_losses(out, targets, b, loss_config)
    return loss_fn

  value_and_grad = jax.jit(jax.value_and_grad(loss_of(graphdef), has_aux=True))
  with open(os.path.join(GOLDEN, "loss.json")) as f:
    ref = json.load(f)
  lb = dict(np.load(os.path.join(GOLDEN, "loss_batch.npz")))
  report, grads, main_batch = {}, None, None
  for name, vids in (("main", ref["batch"]["vid"]), ("FFTT", ref["variant_real_neg_FFTT"]["vid"])):
    b = jax.tree_util.tree_map(jnp.asarray, loss_batch(lb, vids, config.data.max_windows))
    (total, terms), g = value_and_grad(params, b)
    terms = {k: float(v) for k, v in jax.device_get(terms).items()}
    table = weights_table(loss_config, loss_config.model.decoder_layers)
    report[name] = {
        "total": float(total), "terms": terms,
        "weighted_sum": sum(table[k] * v for k, v in terms.items()),
        "real_neg": np.asarray(real_negatives(b["source_id"], b["batch_mask"])).tolist()}
    grads, main_batch = (g, b) if name == "main" else (grads, main_batch)
  with open(os.path.join(out_dir, "loss.json"), "w") as f:
    json.dump(report, f)
  np.savez(os.path.join(out_dir, "grads.npz"), **convert_lib.to_official(grads, config.model))

  # The same forward (and for bf16 the gradient) with bf16 product operands and with the Winograd
  # convolutions (each a graph of its own: both are static attributes of the layers), for their
  # tolerances. The Winograd gradient is left to tests/test_matmul.py (the convolution's
  # gradients against XLA's): its compile here cost ~50 s of the suite's two cores.
  for file, key, value, gradient in (("bf16.npz", "matmul_dtype", "bfloat16", True),
                                     ("winograd.npz", "conv_algorithm", "winograd", False)):
    variant = config.copy_and_resolve_references()
    variant.model[key] = value
    graph = steps_lib.model_graph(variant)  # abstract: no second init
    out_v = jax.device_get(jax.jit(lambda p, b, g=graph: nnx.merge(g, p)(b))(params, batch))
    grads_v = {}
    if gradient:
      grads_v = convert_lib.to_official(
          jax.jit(jax.grad(loss_of(graph), has_aux=True))(params, main_batch)[0], config.model)
    np.savez(os.path.join(out_dir, file), **_flat(out_v, "out"),
             **{f"grad/{k}": v for k, v in grads_v.items()})

  # One official AdamW step. The eval-mode loss also leaves the collab mapper without a gradient
  # (training never does), so it is frozen here next to the model's own no-gradient parameters.
  frozen = nnx.merge(graphdef, params).params_without_gradient() + (
      "main_det_head.co_mapper_linear", "main_det_head.co_mapper_norm")
  tx, schedule = make_optimizer(config.optim, steps_per_epoch=10, frozen=frozen)
  # Jitted: run eagerly, its ~2,000 small operations over 241 leaves took ~18 s on a CPU (and
  # one compile each on a GPU).
  adamw_step = jax.jit(lambda g, p: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))
  np.savez(os.path.join(out_dir, "after.npz"),
           **convert_lib.to_official(adamw_step(grads, params), config.model))
  np.savez(os.path.join(out_dir, "before.npz"), **convert_lib.to_official(params, config.model))
  with open(os.path.join(out_dir, "params.json"), "w") as f:
    json.dump({"converted": n, "lr_step0": float(schedule(0))}, f)
  print("DONE")


if __name__ == "__main__":
  main(sys.argv[1])
