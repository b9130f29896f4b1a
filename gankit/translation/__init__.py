"""Image-to-image GANs as games of the one training loop: pix2pix (paired) and CycleGAN (unpaired)."""
from gankit.translation import cyclegan, folders, pix2pix  # noqa: F401  (registers the games and folder layouts)
