"""DCGAN (Radford et al. 2016), parameterised by resolution and width instead of one class per size.

G doubles the resolution from a small base (7 px for 28, 4 px for 32/64/128...) while halving the
channels; D mirrors it. Options cover the common tutorial variants: a conv or fully connected stem,
5x5 kernels, max-pool downsampling and a fully connected D head.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from gankit.models.conditional import (ConditionalBatchNorm, CondSequential, Projection, check_conditioning,
                                       label_embedding, label_maps, require_labels)
from gankit.models.layers import activation as make_activation
from gankit.models.layers import (MinibatchStd, apply_spectral_norm, image_shape, output_activation, pyramid,
                                  same_padding)
from gankit.models.registry import DISCRIMINATORS, GENERATORS


def _norm2d(norm: str, channels: int, num_classes: int | None = None) -> list[nn.Module]:
    """[BatchNorm2d], [ConditionalBatchNorm] when ``num_classes`` is given, or [] for norm none."""
    if norm == "batch":
        return [ConditionalBatchNorm(channels, num_classes) if num_classes else nn.BatchNorm2d(channels)]
    if norm == "none":
        return []
    raise ValueError(f"norm must be batch or none, got {norm!r}")


def _input_pad(side: int, pad_to: int | None) -> tuple[nn.Module, int]:
    """The layer that zero-pads a ``side`` px input to ``pad_to`` px (evenly), and the padded side."""
    if pad_to is None or pad_to == side:
        return nn.Identity(), side
    if pad_to < side or (pad_to - side) % 2:
        raise ValueError(f"pad_to must exceed the input side {side} by an even number of pixels, got {pad_to}")
    return nn.ZeroPad2d((pad_to - side) // 2), pad_to


@GENERATORS.register("dcgan")
class DCGANGenerator(nn.Module):
    """Conditional (``num_classes``): a label embedding of ``embed_dim`` features joins z, and with
    ``conditional_norm`` every BatchNorm takes per-class scales and shifts (set embed_dim 0 to condition
    through the norms alone). ``bias_before_norm`` keeps the bias of layers followed by BatchNorm
    (PyTorch's default, which tutorials keep; the norm's shift makes it redundant, so gankit drops it)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int | None = None, *,
                 width: int = 64, max_width: int | None = None, stem: str = "conv", fc_hidden: list[int] = [],
                 kernel: int = 4, norm: str = "batch", activation: str = "relu", slope: float = 0.2,
                 output: str = "tanh", embed_dim: int = 32, conditional_norm: bool = False,
                 bias_before_norm: bool = False, upsample: str = "transposed") -> None:
        super().__init__()
        if conditional_norm and norm != "batch":
            raise ValueError("conditional_norm needs norm batch")
        # an unconditional run of a conditional preset (model.conditional auto on unlabelled data)
        # keeps plain BatchNorm: conditional_norm applies when there are classes
        if num_classes is not None and embed_dim < 1 and not conditional_norm:
            raise ValueError("a conditional dcgan generator needs embed_dim >= 1 or conditional_norm: true")
        self.num_classes = num_classes
        self.embed = label_embedding(num_classes, embed_dim)
        latent_dim += embed_dim if self.embed is not None else 0
        cbn = num_classes if conditional_norm else None
        channels, side = image_shape(out_shape, "dcgan")
        base, levels = pyramid(side)
        widths = [width * 2 ** (levels - 1 - i) for i in range(levels)]
        if max_width:
            widths = [min(w, max_width) for w in widths]
        self.base, self.c0 = base, widths[0]
        use_bias = norm == "none" or bias_before_norm
        if stem == "conv":
            self.stem = CondSequential(nn.Unflatten(1, (latent_dim, 1, 1)),
                                       nn.ConvTranspose2d(latent_dim, widths[0], base, 1, 0, bias=use_bias),
                                       *_norm2d(norm, widths[0], cbn), make_activation(activation, slope))
        elif stem == "fc":
            layers: list[nn.Module] = []
            n = latent_dim
            for h in [*fc_hidden, widths[0] * base * base]:
                layers += [nn.Linear(n, h, bias=use_bias)]
                if norm == "batch":
                    layers += [ConditionalBatchNorm(h, cbn, dims=1) if cbn else nn.BatchNorm1d(h)]
                layers += [make_activation(activation, slope)]
                n = h
            self.stem = CondSequential(*layers, nn.Unflatten(1, (widths[0], base, base)))
        else:
            raise ValueError(f"stem must be conv or fc, got {stem!r}")
        pad = same_padding(kernel)
        out_pad = 2 - kernel + 2 * pad  # makes every transposed conv exactly double the side
        if upsample not in ("transposed", "nearest", "bilinear"):
            raise ValueError(f"upsample must be transposed, nearest or bilinear, got {upsample!r}")

        def doubling(c_in: int, c_out: int, bias: bool) -> list[nn.Module]:
            if upsample == "transposed":
                return [nn.ConvTranspose2d(c_in, c_out, kernel, 2, pad, out_pad, bias=bias)]
            # resize, then a stride-1 conv: no uneven kernel overlap, so no checkerboard (Odena et al. 2016)
            before = (kernel - 1) // 2  # an even kernel pads one pixel more after than before
            return [nn.Upsample(scale_factor=2, mode=upsample), nn.ZeroPad2d((before, kernel - 1 - before) * 2),
                    nn.Conv2d(c_in, c_out, kernel, 1, 0, bias=bias)]

        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            blocks += [*doubling(c_in, c_out, use_bias), *_norm2d(norm, c_out, cbn), make_activation(activation, slope)]
        blocks += [*doubling(widths[-1], channels, True), output_activation(output)]
        self.body = CondSequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, self.num_classes, "dcgan generator")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.body(self.stem(z, y), y)


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    """Conditional (``num_classes``): ``conditioning`` concat appends the label embedding (``embed_dim``
    features) to the image as constant maps; projection adds ``<embed(y), h>`` with h the input of the
    last linear map (the flattened final features, or the last fc_hidden layer); acgan adds class
    logits to the output (an auxiliary classifier: D judges real/fake unconditionally)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int | None = None, *, width: int = 64,
                 max_width: int | None = None, kernel: int = 4, downsample: str = "stride", padding: str = "same",
                 norm: str = "batch",
                 first_norm: bool = False, slope: float = 0.2, head: str = "conv", fc_hidden: list[int] = [],
                 dropout: float = 0.0, spectral_norm: bool = False, minibatch_std: bool = False,
                 conditioning: str = "projection", embed_dim: int = 8, pad_to: int | None = None,
                 bias_before_norm: bool = False) -> None:
        super().__init__()
        check_conditioning(conditioning, ("concat", "projection", "acgan"))
        concat = num_classes is not None and conditioning == "concat"
        if concat and embed_dim < 1:
            raise ValueError(f"concat conditioning needs embed_dim >= 1, got {embed_dim}")
        self.num_classes = num_classes
        self.embed = label_embedding(num_classes, embed_dim) if concat else None
        channels, side = image_shape(in_shape, "dcgan")
        # pad_to: a D designed for 32 px (seed002's) runs unchanged on 28 px digits;
        # bias_before_norm: as in the generator
        self.pad, side = _input_pad(side, pad_to)
        base, levels = pyramid(side)
        widths = [width * 2 ** i for i in range(levels)]
        if max_width:
            widths = [min(w, max_width) for w in widths]
        if downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be stride or maxpool, got {downsample!r}")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be same or valid, got {padding!r}")
        if downsample == "maxpool" and kernel % 2 == 0 and padding == "same":
            raise ValueError(f"maxpool downsampling needs an odd kernel to keep the side, got {kernel}")
        use_bias = norm == "none"
        # valid: unpadded convs shrink the side by kernel - 1 before each downsampling (seed 004's
        # tutorial D, 28 -> 24 -> 12 -> 8 -> 4), so the head's input size is measured, not assumed
        pad = same_padding(kernel) if padding == "same" else 0
        layers: list[nn.Module] = []
        c_in = channels + (embed_dim if concat else 0)
        for i, c_out in enumerate(widths):
            stride = 2 if downsample == "stride" else 1
            bias = use_bias or bias_before_norm or (i == 0 and not first_norm)
            layers.append(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=bias))
            if i > 0 or first_norm:
                layers += _norm2d(norm, c_out)
            layers.append(nn.LeakyReLU(slope, inplace=True))
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in = c_out
        if minibatch_std:
            layers.append(MinibatchStd())
            c_in += 1
        self.features = nn.Sequential(*layers)
        if padding == "same":
            final = base
        else:
            with torch.no_grad():  # eval mode: no BatchNorm statistics, no dropout draws
                final = self.features.eval()(torch.zeros(2, channels + (embed_dim if concat else 0), side, side)).shape[-1]
            self.features.train()
            if final < 1:
                raise ValueError(f"padding valid with kernel {kernel} leaves no pixels at {side} px")
        n = c_in * final * final  # the conv head is a linear map of the flattened features
        if head == "conv":
            self.head = nn.Sequential(nn.Conv2d(c_in, 1, final, 1, 0), nn.Flatten())
        elif head == "fc":
            head_layers: list[nn.Module] = [nn.Flatten()]
            for h in fc_hidden:
                head_layers += [nn.Linear(n, h), nn.LeakyReLU(slope, inplace=True)]
                n = h
            self.head = nn.Sequential(*head_layers, nn.Linear(n, 1))
        else:
            raise ValueError(f"head must be conv or fc, got {head!r}")
        # acgan (Odena et al. 2017): the last layer also predicts the class, outputs (N, 1 + classes)
        self.aux_classes = num_classes if num_classes is not None and conditioning == "acgan" else 0
        if self.aux_classes and head == "conv":
            self.head = nn.Sequential(nn.Conv2d(c_in, 1 + self.aux_classes, final, 1, 0), nn.Flatten())
        elif self.aux_classes:
            self.head[-1] = nn.Linear(self.head[-1].in_features, 1 + self.aux_classes)
        self.projection = Projection(num_classes, n) if num_classes is not None and not concat \
            and not self.aux_classes else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pad(x)
        if self.aux_classes:  # judges any image without its label, then tells its class
            return self.head(self.features(x))  # column 0 real/fake, then class logits (objectives.split_aux)
        y = require_labels(y, self.num_classes, "dcgan discriminator")
        if self.embed is not None:
            x = label_maps(x, self.embed(y))
        h = self.features(x)
        if self.projection is None:
            return self.head(h).squeeze(1)
        if isinstance(self.head[-1], nn.Linear):  # fc head: project the last hidden layer
            h = self.head[:-1](h)
            return self.head[-1](h).squeeze(1) + self.projection(h, y)
        return self.head(h).squeeze(1) + self.projection(h, y)
