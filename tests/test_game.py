"""gankit.games: the loop trains any registered game; the noise -> image GAN is the game `gan`, and its
checkpoints from before games existed still resume bit-exact."""
from __future__ import annotations

import pytest

from conftest import TINY, assert_states_equal, make_cfg
from gankit.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from gankit.config import ConfigError, from_dict
from gankit.games.base import GAMES
from gankit.games.noise_to_image import NoiseToImage
from gankit.train import prepare, train


def test_games_are_registered_and_gan_is_the_noise_to_image_game():
    assert GAMES.names() == ["bigan", "cyclegan", "gan", "pix2pix"]
    assert isinstance(prepare(from_dict(make_cfg(TINY, "data.limit=64"))), NoiseToImage)
    with pytest.raises(ConfigError, match="game.name: unknown game 'pix3pix'; did you mean 'pix2pix'"):
        prepare(from_dict(make_cfg(TINY, "game.name=pix3pix")))


def test_a_checkpoint_without_a_game_section_resumes_bit_exact(tmp_path):
    """Checkpoints written before games existed hold no `game` in their config: they are `gan` runs."""
    train(make_cfg(TINY, "train.steps=10"), tmp_path / "old")
    path = CheckpointDir(tmp_path / "old" / "checkpoints").latest()
    state, meta = load_checkpoint(path)
    del meta["config"]["game"]
    meta["config"]["optim"]["schedule"] = "constant"
    save_checkpoint(path, state, meta)
    train(make_cfg(TINY, "train.steps=20"), tmp_path / "old", resume=True)
    train(make_cfg(TINY, "train.steps=20"), tmp_path / "straight")
    resumed, _ = load_checkpoint(CheckpointDir(tmp_path / "old" / "checkpoints").latest())
    expected, _ = load_checkpoint(CheckpointDir(tmp_path / "straight" / "checkpoints").latest())
    assert_states_equal(resumed, expected)


def test_translation_settings_the_games_do_not_support_are_refused():
    cfg = make_cfg({"game": {"name": "pix2pix", "task": "superres4"}, "data": {"limit": 64},
                    "train": {"device": "cpu", "batch_size": 8}}, "train.ema_decay=0.9")
    with pytest.raises(ConfigError, match="train.ema_decay: the pix2pix game trains with no EMA"):
        prepare(from_dict(cfg))
