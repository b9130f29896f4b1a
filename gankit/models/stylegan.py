"""A compact StyleGAN2 (Karras et al. 2020), parameterised by resolution and channel widths.

G: a mapping network z -> w, a learned constant 4x4 input, per resolution two 3x3 convolutions
whose weights are modulated by a style (an affine map of w) and demodulated, per-layer noise with a
learned strength, and skip connections that sum the toRGB outputs of every resolution. Every layer
uses the equalised learning rate: weights are stored N(0, 1) and scaled by He's constant at runtime
(``model.init`` does not apply to these layers). D: residual blocks, minibatch standard deviation
and equalised learning rate. Train with ``objective: {name: ns, r1_gamma: ..., r1_every: 16}``;
``pl_weight`` > 0 adds StyleGAN2's lazy path-length regularisation to G's loss.

Randomness. In training mode G draws its noise inputs and style-mixing latents from the global
torch RNG, which checkpoints save, so a resumed run is bit-exact. In eval mode (sampling, EMA) it
draws nothing: the noise inputs are fixed buffers (StyleGAN2's ``noise_mode='const'``), so
``gankit sample --seed S`` gives the same images every time, and no style mixing happens.

Resolutions are powers of two from 8 to 1024 (tested 16-256); 28 px MNIST is trained at
``data.resolution: 32``, which resizes the digits, and evaluation resizes the reference the same way.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.models.conditional import Projection, label_embedding, require_labels
from gankit.models.layers import MinibatchStd, doubling_widths, image_shape, output_activation
from gankit.models.registry import DISCRIMINATORS, GENERATORS

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("auto", "random", "const", "none")


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU scaled by sqrt(2) to keep the activations' magnitude (He et al.)."""
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate; ``lr_mul`` slows it down (the mapping net)."""

    def __init__(self, n_in: int, n_out: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init) / lr_mul))
        self.weight_gain, self.lr_mul, self.act = lr_mul / math.sqrt(n_in), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.act else x


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate; ``down`` average-pools 2x first, so the conv runs at
    the lower resolution (the cost of StyleGAN2's blur + stride-2 conv)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, bias: bool = True, act: bool = False,
                 down: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.act, self.down, self.padding = act, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(x) if self.act else x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool
                     ) -> torch.Tensor:
    """Conv of ``x`` with ``weight`` scaled per sample and input channel by ``styles`` (N, C_in).

    Computed as scale -> shared conv -> rescale rather than one grouped conv per sample: the same
    result (StyleGAN2's non-fused path) and much faster on CPUs.
    """
    x = F.conv2d(x * styles[:, :, None, None], weight, padding=weight.shape[-1] // 2)
    if demodulate:  # 1 / |w'| per sample and output channel, with w' = w * s
        dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
        x = x * dcoefs[:, :, None, None]
    return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally after 2x bilinear upsampling), noise input, bias, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, *, up: bool, noise: bool) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.up, self.use_noise = up, noise
        if noise:
            self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const
            x = x + noise * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation (its output scale matters)."""

    def __init__(self, c_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1.0 / math.sqrt(c_in)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), demodulate=False)
        return x + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (the constant, or an upsampling conv) + a conv + toRGB added to the skip image.

    It reads ``num_conv + 1`` consecutive styles; its toRGB shares a style with the next block's first
    conv, as in StyleGAN2, so a generator of side 2^k has 2k - 2 styles.
    """

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, channels: int, noise: bool) -> None:
        super().__init__()
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(c_out, 4, 4))
        else:
            self.conv0 = StyledConv(c_in, c_out, w_dim, resolution, up=True, noise=noise)
        self.conv1 = StyledConv(c_out, c_out, w_dim, resolution, up=False, noise=noise)
        self.torgb = ToRGB(c_out, channels, w_dim)
        self.num_conv = 1 if self.first else 2

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_conv])
        if img is not None:
            rgb = rgb + F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
        return x, rgb


def _power_of_two_side(shape: tuple[int, ...], model: str) -> tuple[int, int]:
    channels, side = image_shape(shape, model)
    if side < 8 or side > 1024 or side & (side - 1):
        raise ValueError(f"{model} needs a power-of-two image side from 8 to 1024 px, got {side}; set "
                         "data.resolution (e.g. 32 for 28 px MNIST)")
    return channels, side


@GENERATORS.register("stylegan")
class StyleGANGenerator(nn.Module):
    """StyleGAN2 generator. ``forward(z, y=None, *, psi=1.0, noise="auto")``; see :meth:`mapping` and
    :meth:`synthesis` for the two halves (style mixing and truncation tools use them)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int | None = None, *,
                 width: int = 32, max_width: int = 256, w_dim: int | None = None, mapping_layers: int = 8,
                 mapping_width: int | None = None, mapping_lr: float = 0.01, style_mixing: float = 0.9,
                 w_avg_beta: float = 0.995, noise: bool = True, embed_dim: int | None = None,
                 pl_weight: float = 0.0, pl_every: int = 4, pl_batch: int = 8, pl_decay: float = 0.01,
                 output: str = "none") -> None:
        super().__init__()
        channels, side = _power_of_two_side(out_shape, "stylegan")
        if mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {mapping_layers}")
        if not 0.0 <= style_mixing <= 1.0:
            raise ValueError(f"style_mixing is a probability in [0, 1], got {style_mixing}")
        if not 0.0 <= w_avg_beta < 1.0:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {w_avg_beta}")
        if pl_weight < 0 or pl_every < 1 or pl_batch < 1 or not 0.0 < pl_decay <= 1.0:
            raise ValueError(f"path-length regularisation needs pl_weight >= 0, pl_every >= 1, pl_batch >= 1 and "
                             f"pl_decay in (0, 1]; got {pl_weight}, {pl_every}, {pl_batch}, {pl_decay}")
        self.latent_dim = latent_dim
        self.w_dim = w_dim or latent_dim
        self.num_classes, self.style_mixing, self.w_avg_beta = num_classes, style_mixing, w_avg_beta
        # mapping: normalised z (and label embedding) -> w through an MLP trained 100x slower
        self.embed = label_embedding(num_classes, embed_dim or self.w_dim)
        n_in = latent_dim + (self.embed.embedding_dim if self.embed is not None else 0)
        hidden = mapping_width or self.w_dim
        dims = [n_in] + [hidden] * (mapping_layers - 1) + [self.w_dim]
        self.mapping_net = nn.Sequential(*[EqualLinear(a, b, lr_mul=mapping_lr, act=True)
                                           for a, b in zip(dims, dims[1:])])
        self.register_buffer("w_avg", torch.zeros(self.w_dim))  # tracked in training, for truncation
        widths = doubling_widths(side, width, max_width)
        self.blocks = nn.ModuleList()
        c_in = widths[4]
        for res, c_out in widths.items():
            self.blocks.append(SynthesisBlock(c_in, c_out, self.w_dim, res, channels, noise))
            c_in = c_out
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1
        self.output = output_activation(output)
        self.pl_weight, self.pl_every, self.pl_batch, self.pl_decay = pl_weight, pl_every, pl_batch, pl_decay
        if pl_weight > 0:  # buffers only when on, so runs without it keep their checkpoint layout
            self.register_buffer("pl_mean", torch.zeros(()))  # running mean of the path lengths
            self.register_buffer("pl_calls", torch.zeros((), dtype=torch.long))  # G steps seen (laziness)

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, *, psi: float = 1.0) -> torch.Tensor:
        """Per-layer styles (N, num_ws, w_dim), truncated towards ``w_avg`` when ``psi != 1``."""
        w = self._map(z, y)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, psi)

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor:
        """w_avg + psi (w - w_avg): psi = 0 gives the mean image, 1 leaves w as it is."""
        return ws if psi == 1.0 else self.w_avg.lerp(ws, psi)

    def _map(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        y = require_labels(y, self.num_classes, "stylegan generator")
        if self.embed is not None:
            x = torch.cat([x, normalize_2nd_moment(self.embed(y))], 1)
        return self.mapping_net(x)

    def synthesis(self, ws: torch.Tensor, noise: str = "auto") -> torch.Tensor:
        """Images from per-layer styles; ``noise``: auto (random in training, fixed in eval), random,
        const (the fixed buffers) or none."""
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"synthesis needs styles of shape (N, {self.num_ws}, {self.w_dim}), "
                             f"got {tuple(ws.shape)}")
        mode = ("random" if self.training else "const") if noise == "auto" else noise
        x = img = None
        i = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, i:i + block.num_conv + 1], mode)
            i += block.num_conv
        return self.output(img)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, *, psi: float = 1.0,
                noise: str = "auto") -> torch.Tensor:
        w = self._map(z, y)
        if self.training:
            with torch.no_grad():  # w_avg <- beta w_avg + (1 - beta) mean(w)
                # in float32 whatever autocast made w: the average outlives the step
                self.w_avg.copy_(w.detach().to(self.w_avg.dtype).mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.style_mixing > 0 and self.num_ws > 1:
            ws = self._mix(ws, z, y)
        return self.synthesis(self.truncate(ws, psi), noise)

    def regularization(self) -> torch.Tensor | None:
        """Lazy path-length regularisation (StyleGAN2): every ``pl_every``-th G step,
        ``pl_weight * pl_every * path_length_penalty()``; None on the other steps and when off. The
        training loop adds it to G's loss."""
        if not self.pl_weight or not self.training:
            return None
        self.pl_calls += 1
        if int(self.pl_calls) % self.pl_every:
            return None
        return self.pl_weight * self.pl_every * self.path_length_penalty()

    def path_length_penalty(self) -> torch.Tensor:
        """(|J_w^T y| - a)^2 for ``pl_batch`` fresh latents: J_w the Jacobian of the image with respect to
        the styles, y unit-variance image noise scaled by 1/sqrt(pixels), a the running mean of the
        lengths (updated here). Low values mean a fixed step in w changes the image by a fixed amount
        in every direction: a smoother, better-conditioned G. Draws from the global RNG, like the
        noise inputs, so resume stays bit-exact."""
        device = self.w_avg.device
        z = torch.randn(self.pl_batch, self.latent_dim, device=device)
        y = None if self.num_classes is None else torch.randint(self.num_classes, (self.pl_batch,), device=device)
        ws = self._map(z, y).unsqueeze(1).repeat(1, self.num_ws, 1)
        img = self.synthesis(ws)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), self.pl_decay))
        return (lengths - self.pl_mean).square().mean()

    def _mix(self, ws: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Style mixing regularisation: with probability ``style_mixing`` the layers from a random
        cutoff on take the styles of a second latent (one cutoff per batch, as in StyleGAN2)."""
        # CPU draws from the global RNG whatever the device, so the schedule is device independent
        if float(torch.rand(())) >= self.style_mixing:
            return ws
        cutoff = int(torch.randint(1, self.num_ws, ()))
        z2 = torch.randn(z.shape, device=z.device, dtype=z.dtype)
        w2 = self._map(z2, y)
        return torch.cat([ws[:, :cutoff], w2.unsqueeze(1).expand(-1, self.num_ws - cutoff, -1)], 1)


class DBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3, act=True)
        self.conv1 = EqualConv2d(c_in, c_out, 3, act=True, down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        return (skip + self.conv1(self.conv0(x))) * math.sqrt(0.5)  # keep unit variance


@DISCRIMINATORS.register("stylegan")
class StyleGANDiscriminator(nn.Module):
    """StyleGAN2's residual D: fromRGB, residual blocks down to 4x4, minibatch std, conv and two FCs.
    Conditional models add a projection term on the last hidden features."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int | None = None, *, width: int = 32,
                 max_width: int = 256, mbstd_group: int = 4) -> None:
        super().__init__()
        channels, side = _power_of_two_side(in_shape, "stylegan")
        widths = doubling_widths(side, width, max_width)
        if mbstd_group < 1:
            raise ValueError(f"mbstd_group must be >= 1, got {mbstd_group}")
        self.num_classes = num_classes
        self.from_rgb = EqualConv2d(channels, widths[side], 1, act=True)
        self.blocks = nn.Sequential(*[DBlock(widths[r], widths[r // 2])
                                      for r in sorted(widths, reverse=True) if r > 4])
        c = widths[4]
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(c + 1, c, 3, act=True)
        self.fc = EqualLinear(c * 16, c, act=True)
        self.out = EqualLinear(c, 1)
        self.projection = Projection(num_classes, c) if num_classes is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "stylegan discriminator")
        h = self.blocks(self.from_rgb(x))
        h = self.conv(self.mbstd(h))
        h = self.fc(h.flatten(1))
        logits = self.out(h).squeeze(1)
        return logits if self.projection is None else logits + self.projection(h, y)
