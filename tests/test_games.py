"""gankit.games: the registry, and the conformance suite. Every registered game honours the one interface
(gankit.games.base.Game) and every loop feature works for it: its state round-trips, a resume is bit-exact,
non-finite weights are never saved, its grid is written, and two processes train it. A new game adds its
tiny config to CONFIGS and passes all of this unchanged. The noise -> image GAN is the game `gan`, and its
checkpoints from before games existed still resume bit-exact."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from conftest import TINY, TINY_RING, assert_states_equal, make_cfg, run_of, step_game
from gankit.checkpoint import CheckpointDir, CheckpointError, load_checkpoint, save_checkpoint
from gankit.config import ConfigError, from_dict
from gankit.games.base import GAMES, Game, sample_path, weights_finite
from gankit.games.noise_to_image import NoiseToImage
from gankit.games.phases import single_phase, train_step
from gankit.run_state import RunState
from gankit.sampling import latents
from gankit.train import prepare, train
from test_bigan import BIGAN
from test_translation import CYCLE, P2P

QUIET = ["log.every=5", "log.sample_every=0", "train.threads=1", "perf.amp=fp32"]
CONFIGS: dict[str, dict[str, Any]] = {
    "gan": make_cfg(TINY, *QUIET),
    "pix2pix": make_cfg(P2P, *QUIET),
    "cyclegan": make_cfg(CYCLE, *QUIET),
    "bigan": make_cfg(BIGAN, *QUIET),
}
GAME_NAMES = sorted(CONFIGS)


def test_every_registered_game_has_a_conformance_config():
    assert set(GAMES.names()) == set(CONFIGS), "add the new game's tiny config to CONFIGS"


def _game(name: str, *overrides: str) -> Game:
    return prepare(from_dict(make_cfg(CONFIGS[name], *overrides)))


@pytest.mark.parametrize("name", GAME_NAMES)
def test_the_phases_name_the_game_s_networks_and_optimizers(name):
    game = _game(name)
    assert game.phases and len({p.name for p in game.phases}) == len(game.phases)
    for phase in game.phases:
        assert phase.optimizer in game.optimizers
        assert set(phase.trains) | set(phase.frozen) <= set(game.nets)
        assert not set(phase.trains) & set(phase.frozen)
        assert phase.repeat >= 1
    assert set(game.optimizers) == {"g", "d"}


@pytest.mark.parametrize("name", GAME_NAMES)
def test_a_step_counts_once_and_moves_only_what_its_phases_train(name):
    game = _game(name)
    run = run_of(game, 10)
    before = {k: copy.deepcopy(net.state_dict()) for k, net in game.nets.items()}
    stats = train_step(game, run)
    assert run.step == 1 and run.images_seen == game.cfg.train.batch_size * sum(
        p.repeat for p in game.phases if p.counts_images)
    assert stats and all(torch.isfinite(v).all() for v in stats.values())
    trained = {n for p in game.phases for n in p.trains}
    for key, net in game.nets.items():
        moved = any(not torch.equal(before[key][k], v) for k, v in net.state_dict().items())
        if key in trained:
            assert moved, key


@pytest.mark.parametrize("name", GAME_NAMES)
def test_a_single_phase_leaves_the_other_networks_alone(name):
    """The playground's "D step" button: the first phase alone updates only the weights it trains (a forward
    pass may still move BatchNorm's running statistics)."""
    game = _game(name)
    run = RunState(total=10)
    phase = game.phases[0]
    weights = {k: {n: p.detach().clone() for n, p in game.nets[k].named_parameters()}
               for k in game.nets if k not in phase.trains}
    single_phase(game, run, phase.name)
    for key, state in weights.items():
        assert_states_equal(dict(game.nets[key].named_parameters()), state, key)
    assert run.step == (1 if len(game.phases) == 1 else 0)
    with pytest.raises(ValueError, match="no phase 'X'"):
        single_phase(game, run, "X")


@pytest.mark.parametrize("name", GAME_NAMES)
def test_the_state_round_trips_into_a_fresh_game(name):
    game = _game(name)
    for _ in range(3):
        step_game(game, 10)
    state, meta = copy.deepcopy(game.state_dict()), game.meta()
    assert meta["game"] == name and meta["config"]["game"]["name"] == name
    # both continue identically (the global RNG, part of the state, is restored before each)
    game.load_state_dict(copy.deepcopy(state), meta)
    stats = train_step(game, RunState(step=3, total=10))
    fresh = _game(name)
    fresh.load_state_dict(copy.deepcopy(state), meta)
    assert_states_equal(fresh.state_dict(), state)
    assert train_step(fresh, RunState(step=3, total=10)).keys() == stats.keys()
    for key in game.nets:
        assert_states_equal(game.nets[key].state_dict(), fresh.nets[key].state_dict(), key)


class StopAfter:
    """A stop request (Ctrl-C) that arrives before step ``steps`` + 1: the loop polls it once per step."""

    def __init__(self, steps: int) -> None:
        self.polls, self.steps = 0, steps

    @property
    def requested(self) -> bool:
        self.polls += 1
        return self.polls > self.steps


@pytest.mark.parametrize("name", GAME_NAMES)
def test_resume_is_bit_exact(name, tmp_path):
    """40 steps interrupted after 20 and resumed end where 40 straight steps do (schedules over 40 alike)."""
    cfg = make_cfg(CONFIGS[name], "train.steps=40", "checkpoint.every=100")
    first = train(cfg, tmp_path / "resumed", stop=StopAfter(20))
    assert first.stopped_by == "interrupt" and first.step == 20
    resumed = train(cfg, tmp_path / "resumed", resume=True)
    straight = train(cfg, tmp_path / "straight")
    (a, meta_a), (b, meta_b) = load_checkpoint(resumed.checkpoint), load_checkpoint(straight.checkpoint)
    assert meta_a["step"] == meta_b["step"] == 40 and meta_a["images_seen"] == meta_b["images_seen"]
    assert_states_equal(a, b)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_non_finite_weights_are_seen_and_never_saved(name, tmp_path):
    game = _game(name)
    step_game(game, 10)
    assert weights_finite(game)
    net = next(iter(game.nets.values()))
    with torch.no_grad():
        next(p for p in net.parameters() if p.is_floating_point()).view(-1)[0] = math.nan
    assert not weights_finite(game)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        CheckpointDir(tmp_path).save(1, game.state_dict(), {"config": game.cfg.to_dict(), **game.meta()})
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.parametrize("name", GAME_NAMES)
def test_the_grid_is_a_picture(name, tmp_path):
    game = _game(name)
    step_game(game, 10)
    z = latents(game.cfg.log.grid ** 2, game.cfg.model.latent_dim, 0, game.runtime.device)
    game.write_samples(z, 1, tmp_path, None)
    with Image.open(sample_path(tmp_path, 1)) as picture:
        assert picture.size[0] >= 28 and picture.size[1] >= 28 and len(set(picture.convert("L").tobytes())) > 1


@pytest.mark.parametrize("name", GAME_NAMES)
def test_two_processes_train_and_checkpoint_it(name, tmp_path):
    from test_distributed import _run_workers

    _run_workers(tmp_path, "train", make_cfg(CONFIGS[name], "train.steps=2", "checkpoint.every=2"), tmp_path / "run")
    state, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["world_size"] == 2 and meta["step"] == 2 and meta["game"] == name
    assert [r["rank"] for r in state["rng"]["ranks"]] == [0, 1]


def test_ring_game_is_the_noise_to_image_game_on_points():
    """The 2D games are the `gan` game on points: the conformance configs cover them through TINY_RING."""
    game = prepare(from_dict(make_cfg(TINY_RING, "train.threads=1")))
    assert game.meta()["game"] == "gan" and not game.data.source.is_image


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
