"""Image-to-image data and tools: the tasks (paired, unpaired, built-in digit tasks and folders), reading
and writing image files, running and measuring trained translators. The games are gankit.games.pix2pix and
gankit.games.cyclegan."""
from gankit.translation import folders  # noqa: F401  (registers the folder layouts)
