"""A self-contained PyTorch adapter for compare_torch.py: a two-layer clip scorer trained with BCE.

It is not SG-DETR; it shows the adapter protocol (make(batch) -> (infer, train_step)) and lets the
tests run the comparison without the official code.
"""

import torch


def make(batch):
  video = torch.from_numpy(batch["video"])
  target = torch.from_numpy((batch["saliency"] > 0).astype("float32"))
  model = torch.nn.Sequential(torch.nn.Linear(video.shape[-1], 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 1))
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

  def infer():
    with torch.no_grad():
      return model(video)

  def train_step():
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(video)[..., 0], target)
    loss.backward()
    opt.step()
    return float(loss)

  return infer, train_step
