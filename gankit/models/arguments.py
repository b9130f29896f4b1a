"""What each architecture argument of the built-in models means, and its allowed values, for
``gankit config --model NAME``. A test keeps it complete: every argument of every built-in model has a line."""
from __future__ import annotations

# "model.argument" entries win over "argument" where one name means different things in two models
MEANINGS: dict[str, str] = {
    "width": "channels (units) of the first D layer / last G layer; each resolution step doubles them",
    "widths": "units of each hidden layer, in order",
    "max_width": "cap on the channels of any layer (null = no cap)",
    "kernel": "convolution kernel size",
    "norm": "normalisation after each hidden layer: batch or none",
    "patchgan.norm": "normalisation after each hidden layer: batch, instance or none",
    "resnet.norm": "normalisation after each layer: batch, instance or none",
    "unet.norm": "normalisation after each layer: batch, instance or none",
    "first_norm": "normalise the first layer too (DCGAN leaves it out)",
    "batchnorm": "BatchNorm after each hidden layer",
    "activation": "hidden activation: relu or leaky_relu (with slope)",
    "slope": "negative slope of leaky_relu",
    "output": "G's last activation: tanh (data in [-1, 1]), sigmoid ([0, 1]) or none",
    "stem": "how z becomes the first feature map: conv (a transposed conv) or fc (a linear layer)",
    "z_width": "units of the two layers embedding z in a joint (x, z) discriminator",
    "hidden": "units of the joint discriminator's hidden layer over the features of x and z",
    "fc_hidden": "units of linear layers between z and the convolutions (G) or after them (D)",
    "head": "D's output layer: conv (a last convolution) or fc (flatten, then linear)",
    "upsample": "how G doubles the resolution: transposed (a stride-2 transposed conv) or nearest / bilinear "
                "(2x resizing, then a stride-1 conv)",
    "downsample": "how D halves the resolution: stride (strided convs) or maxpool (conv + 2x2 max-pool)",
    "resnet.downsample": "stride-2 convolutions before the residual blocks (and as many upsamplings after)",
    "padding": "D's convolution padding: same (keeps the side) or valid (no padding, as seed 004's D)",
    "pad_to": "zero-pad inputs to this side first (a D designed for 32 px on 28 px data; null = off)",
    "dropout": "dropout probability after hidden layers (0 = off)",
    "unet.dropout": "dropout probability in the innermost decoder layers (pix2pix's noise)",
    "dropout_layers": "how many innermost decoder layers get dropout",
    "spectral_norm": "spectral normalisation of every weight (SN-GAN's Lipschitz control)",
    "minibatch_std": "append the batch's feature standard deviation as a channel (sees diversity)",
    "mbstd_group": "samples per group of the minibatch standard deviation layer",
    "conditioning": "how D uses the label: concat (as input maps), projection (Miyato & Koyama) or "
                    "acgan (an auxiliary class output)",
    "mlp.conditioning": "how D uses the label: concat (appended to the input) or projection",
    "resnet.conditioning": "how D uses the label: concat or projection",
    "embed_dim": "size of the label embedding (conditional models)",
    "conditional_norm": "BatchNorm scales and shifts per class (conditional BatchNorm)",
    "bias_before_norm": "keep the bias of layers followed by a norm (PyTorch's default, as tutorials)",
    "attention": "side at which a self-attention block sits (null = none)",
    "hierarchical": "split z across the resolutions (BigGAN's hierarchical latent)",
    "shared_dim": "size of BigGAN's shared class embedding",
    "ortho_reg": "weight of BigGAN's orthogonal regularisation of G (0 = off)",
    "extra_blocks": "residual blocks after the last downsampling",
    "blocks": "residual blocks at the lowest resolution",
    "depth": "U-Net levels (each halves the side)",
    "bottleneck": "channels of the U-Net's innermost level (0 = as the level above)",
    "n_layers": "strided convolutions of the patch discriminator (its receptive field grows with them)",
    "mapping_layers": "layers of StyleGAN's mapping network (z -> w)",
    "mapping_lr": "learning-rate multiplier of the mapping network",
    "mapping_width": "units of the mapping network (null = w_dim)",
    "w_dim": "size of StyleGAN's intermediate latent w (null = latent_dim)",
    "w_avg_beta": "decay of the running mean of w that truncation pulls towards",
    "noise": "per-pixel noise inputs (StyleGAN's stochastic detail)",
    "style_mixing": "probability of mixing two w's in one image during training",
    "pl_weight": "weight of the path-length regulariser (0 = off)",
    "pl_every": "apply the path-length regulariser every N G steps (lazy)",
    "pl_batch": "samples of the path-length regulariser's batch",
    "pl_decay": "decay of the path-length regulariser's running mean",
}


def meaning(model: str, argument: str) -> str:
    return MEANINGS.get(f"{model}.{argument}", MEANINGS.get(argument, ""))
