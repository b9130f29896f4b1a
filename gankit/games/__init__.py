"""Every kind of GAN gankit trains, as a game of the one loop: its networks, optimizers, losses (as phases)
and random streams. gankit.games.base says what a game is; each other module is one game."""
