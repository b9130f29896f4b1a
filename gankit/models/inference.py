"""Running a trained network for its outputs: eval mode (BatchNorm's running statistics, no dropout), no
gradients, in batches; translators, encoders and critics alike."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def run_eval(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``net`` in eval mode (BatchNorm's running statistics, no dropout) over ``x`` in batches."""
    was = net.training
    net.eval()
    try:
        return torch.cat([net(chunk) for chunk in x.split(batch_size)])
    finally:
        net.train(was)
