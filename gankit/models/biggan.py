"""A compact BigGAN (Brock et al. 2019), parameterised by resolution and channel widths.

G: a linear layer from the first chunk of z to a 4x4 map, then residual up-blocks whose BatchNorms
take their gains and biases from a linear map of [shared class embedding, the block's own z chunk]
(the hierarchical latent), self-attention at one resolution, and BN-ReLU-conv-tanh to pixels. D:
residual down-blocks (self-attention at one resolution), ReLU, global sum pooling, a linear output
plus the projection term <embed(y), h>. Spectral norm on every conv and linear of both networks
(not on G's shared embedding, as in the reference code). Train with ``objective: {name: hinge}`` and
``train.ema_decay``; ``ortho_reg`` adds BigGAN's off-diagonal orthogonal regularisation to G's loss
through :meth:`BigGANGenerator.regularization`, which the training loop calls.

Without labels (``model.conditional: false``) the embedding is dropped and the BatchNorms read the
z chunks only; with ``hierarchical: false`` as well they are plain BatchNorms.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.models.conditional import Projection, require_labels
from gankit.models.layers import apply_spectral_norm, doubling_widths, image_shape, output_activation
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def orthogonal_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """sum ||W W^T * (1 - I)||_F^2 over matrices W (each weight flattened to (out, -1)): BigGAN's
    orthogonal regularisation, which penalises only the cosine similarity of filters, not their norms."""
    total = params[0].new_zeros(())
    for p in params:
        w = p.flatten(1)
        gram = w @ w.t()
        total = total + (gram - torch.diag_embed(gram.diagonal())).square().sum()
    return total


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019) as in BigGAN: keys and values max-pooled 2x, the
    output scaled by a learned gain that starts at 0, so the block begins as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k, v = max(1, channels // 8), max(1, channels // 2)
        self.theta = nn.Conv2d(channels, k, 1, bias=False)
        self.phi = nn.Conv2d(channels, k, 1, bias=False)
        self.g = nn.Conv2d(channels, v, 1, bias=False)
        self.o = nn.Conv2d(v, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (N, k, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (N, k, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (N, v, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, HW, HW/4)
        out = (g @ beta.transpose(1, 2)).view(n, -1, h, w)
        return x + self.gamma * self.o(out)


class HierarchicalBatchNorm(nn.Module):
    """BatchNorm with gain 1 + A c and bias B c from a conditioning vector c (BigGAN's ccbn); a plain
    affine BatchNorm when there is nothing to condition on."""

    def __init__(self, features: int, cond_dim: int) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.norm = nn.BatchNorm2d(features, affine=cond_dim == 0)
        if cond_dim:
            self.gain = nn.Linear(cond_dim, features, bias=False)
            self.bias = nn.Linear(cond_dim, features, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if not self.cond_dim:
            return x
        return x * (1 + self.gain(c)[:, :, None, None]) + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with a 1x1 conv skip of the upsampled input (nearest neighbour)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = HierarchicalBatchNorm(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = HierarchicalBatchNorm(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2.0)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


def _check_attention(attention: int | None, resolutions: list[int], model: str) -> None:
    if attention is not None and attention not in resolutions:
        raise ValueError(f"attention must be one of the {model}'s resolutions "
                         f"{', '.join(map(str, resolutions))} (or null), got {attention}")


@GENERATORS.register("biggan")
class BigGANGenerator(nn.Module):
    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int | None = None, *,
                 width: int = 32, max_width: int = 512, shared_dim: int = 128, hierarchical: bool = True,
                 attention: int | None = None, spectral_norm: bool = True, ortho_reg: float = 0.0,
                 output: str = "tanh") -> None:
        super().__init__()
        channels, side = image_shape(out_shape, "biggan")
        if side < 8 or side & (side - 1):
            raise ValueError(f"biggan needs a power-of-two image side of at least 8 px, got {side}; set "
                             "data.resolution (e.g. 32 for 28 px MNIST)")
        if ortho_reg < 0:
            raise ValueError(f"ortho_reg must be >= 0, got {ortho_reg}")
        widths = doubling_widths(side, width, max_width)
        sides = sorted(widths)[1:]  # the output side of each block
        _check_attention(attention, sides, "generator")
        num_slots = len(sides) + 1 if hierarchical else 1
        if latent_dim < num_slots:
            raise ValueError(f"a hierarchical latent needs latent_dim >= {num_slots} (one chunk per block "
                             f"and one for the input layer), got {latent_dim}")
        # uneven chunks are fine: sizes differ by at most one, so any latent_dim works
        self.chunks = [len(c) for c in torch.arange(latent_dim).tensor_split(num_slots)]
        self.num_classes, self.ortho_reg, self.hierarchical = num_classes, ortho_reg, hierarchical
        embed = shared_dim if num_classes is not None else 0
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes is not None else None
        self.linear = nn.Linear(self.chunks[0], widths[4] * 16)
        self.blocks = nn.ModuleList()
        for i, res in enumerate(sides):
            cond_dim = embed + (self.chunks[i + 1] if hierarchical else 0)
            layers = [GBlock(widths[res // 2], widths[res], cond_dim)]
            if res == attention:
                layers.append(SelfAttention(widths[res]))
            self.blocks.append(nn.ModuleList(layers))
        self.out_norm = nn.BatchNorm2d(widths[side])
        self.out_conv = nn.Conv2d(widths[side], channels, 3, padding=1)
        self.output = output_activation(output)
        if spectral_norm:  # everything but the shared embedding
            for m in (self.linear, self.blocks, self.out_conv):
                apply_spectral_norm(m)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "biggan generator")
        zs = z.split(self.chunks, dim=1)
        shared = self.shared(y) if self.shared is not None else None
        h = self.linear(zs[0]).view(z.shape[0], -1, 4, 4)
        for i, layers in enumerate(self.blocks):
            parts = [t for t in (shared, zs[i + 1] if self.hierarchical else None) if t is not None]
            c = torch.cat(parts, 1) if parts else None
            for layer in layers:
                h = layer(h, c)
        return self.output(self.out_conv(F.relu(self.out_norm(h))))

    def regularization(self) -> torch.Tensor | None:
        """``ortho_reg`` x the orthogonal penalty of every weight matrix but the shared embedding's;
        None when off. The training loop adds it to G's loss."""
        if not self.ortho_reg:
            return None
        shared = {id(p) for p in self.shared.parameters()} if self.shared is not None else set()
        return self.ortho_reg * orthogonal_penalty(
            [p for p in self.parameters() if p.dim() >= 2 and id(p) not in shared])


class DBlock(nn.Module):
    """(ReLU)-conv-ReLU-conv-pool with a 1x1 conv skip; the first block skips the pre-activation so
    that the ReLU does not clip the input pixels."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, preactivation: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out or down else None
        self.down, self.preactivation = down, preactivation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        skip = x
        if self.preactivation:  # conv then pool; the first block pools first (cheaper, as in BigGAN)
            skip = self.skip(skip) if self.skip is not None else skip
            skip = F.avg_pool2d(skip, 2) if self.down else skip
        else:
            skip = F.avg_pool2d(skip, 2) if self.down else skip
            skip = self.skip(skip) if self.skip is not None else skip
        return h + skip


@DISCRIMINATORS.register("biggan")
class BigGANDiscriminator(nn.Module):
    """Residual down-blocks to 4x4 plus one block at 4x4, ReLU, sum pooling, linear + projection."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int | None = None, *, width: int = 32,
                 max_width: int = 512, attention: int | None = None, spectral_norm: bool = True) -> None:
        super().__init__()
        channels, side = image_shape(in_shape, "biggan")
        if side < 8 or side & (side - 1):
            raise ValueError(f"biggan needs a power-of-two image side of at least 8 px, got {side}; set "
                             "data.resolution (e.g. 32 for 28 px MNIST)")
        widths = doubling_widths(side, width, max_width)
        sides = sorted(widths, reverse=True)[1:]  # the output side of each down-block
        _check_attention(attention, sides, "discriminator")
        layers: list[nn.Module] = []
        c_in = channels
        for i, res in enumerate(sides):
            c_out = widths[res * 2]  # a block's convs run at its input side, with that side's width
            layers.append(DBlock(c_in, c_out, down=True, preactivation=i > 0))
            if res == attention:
                layers.append(SelfAttention(c_out))
            c_in = c_out
        layers.append(DBlock(c_in, c_in, down=False, preactivation=True))
        self.blocks = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, 1)
        self.num_classes = num_classes
        self.projection = Projection(num_classes, c_in) if num_classes is not None else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "biggan discriminator")
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        logits = self.linear(h).squeeze(1)
        return logits if self.projection is None else logits + self.projection(h, y)
