"""gankit.streams: per-process seeds, the training / latent streams of one process and of several, and the
checkpointed RNG state with its restore (own snapshot, a checkpoint of as many processes, or another count)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from gankit import streams
from gankit.distributed import Dist
from gankit.streams import random_streams, rank_seed, restore_rng, rng_state

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """These tests reseed the global torch RNG; leave it as it was for the tests after them."""
    saved = torch.get_rng_state()
    yield
    torch.set_rng_state(saved)


def _draw(gen: torch.Generator | None = None, n: int = 5) -> torch.Tensor:
    return torch.rand(n, generator=gen)


def _game(rank: int = 0, world_size: int = 1, seed: int = 0) -> SimpleNamespace:
    """What rng_state / restore_rng read: the streams random_streams makes, a Dist and a device."""
    dist = Dist(rank=rank, world_size=world_size)
    rng, zrng = random_streams(dist, seed, CPU)
    return SimpleNamespace(rng=rng, zrng=zrng, dist=dist, device=CPU)


def test_rank_seed_is_deterministic_and_separates_seeds_ranks_and_streams():
    assert rank_seed(7, 1, "noise") == rank_seed(7, 1, "noise")
    seeds = {rank_seed(seed, rank, stream) for seed in (0, 1, 2) for rank in (0, 1, 2, 3)
             for stream in ("torch", "noise")}
    assert len(seeds) == 24
    # not seed + k arithmetic: (seed 1, rank 0) is not (seed 0, rank 1), unlike seed + rank
    assert rank_seed(1, 0, "noise") != rank_seed(0, 1, "noise")
    assert all(0 <= s < 2 ** 63 for s in seeds)  # a valid torch.manual_seed
    torch.Generator().manual_seed(max(seeds))
    # the streams of two ranks are uncorrelated
    a = _draw(torch.Generator().manual_seed(rank_seed(0, 0, "noise")), 4000)
    b = _draw(torch.Generator().manual_seed(rank_seed(0, 1, "noise")), 4000)
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.05


def test_one_process_has_one_stream_seeded_seed_plus_latents_and_leaves_the_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    noise, latent = random_streams(Dist(), 5, CPU)
    assert latent is None
    assert torch.equal(torch.get_rng_state(), before)  # model initialisation is not disturbed
    assert torch.equal(_draw(noise), _draw(torch.Generator().manual_seed(5 + streams.LATENTS)))


def test_several_processes_share_the_latent_stream_and_own_their_noise_and_global_rng():
    made = []
    for rank in (0, 1, 0):
        noise, latent = random_streams(Dist(rank=rank, world_size=2), 5, CPU)
        made.append((_draw(noise), _draw(latent), _draw()))  # the global RNG: dropout
    (n0, z0, g0), (n1, z1, g1), (n0b, z0b, g0b) = made
    assert torch.equal(z0, z1)  # every process draws the same latents
    assert torch.equal(z0, _draw(torch.Generator().manual_seed(5 + streams.LATENTS)))  # as one process would
    assert not torch.equal(n0, n1) and not torch.equal(g0, g1)
    assert not torch.equal(n0, z0)  # the noise stream is not the latent stream
    assert torch.equal(n0, n0b) and torch.equal(g0, g0b)  # a rank's streams are reproducible
    assert torch.equal(n0, _draw(torch.Generator().manual_seed(rank_seed(5, 0, "noise"))))


def test_a_snapshot_restores_every_stream_of_one_process():
    game = _game()
    _draw(game.rng)
    _draw()
    state = rng_state(game)
    assert set(state) == {"torch", "train", "cuda"} and state["cuda"] is None
    expected = (_draw(game.rng), _draw())
    _draw(game.rng, 17)  # move on
    _draw(None, 3)
    restore_rng(game, state)
    assert torch.equal(_draw(game.rng), expected[0]) and torch.equal(_draw(), expected[1])


def test_a_snapshot_of_one_of_several_processes_restores_its_own_streams():
    game = _game(rank=1, world_size=2)
    state = rng_state(game)
    assert state["rank"] == 1 and "latent" in state
    expected = (_draw(game.rng), _draw(game.zrng), _draw())
    for gen in (game.rng, game.zrng, None):
        _draw(gen, 9)
    restore_rng(game, state)  # a rollback to this process's own snapshot
    assert all(torch.equal(a, b) for a, b in zip((_draw(game.rng), _draw(game.zrng), _draw()), expected))


def _checkpoint(world_size: int) -> tuple[dict, list[tuple[torch.Tensor, ...]]]:
    """What rank 0 writes in a run of ``world_size`` processes: its state plus every rank's, and what each
    rank draws next."""
    states, nexts = [], []
    for rank in range(world_size):
        game = _game(rank, world_size, seed=3)
        _draw(game.rng, rank + 2)
        _draw(game.zrng, 4)
        states.append(rng_state(game))
        nexts.append((_draw(game.rng), _draw(game.zrng), _draw()))
    return {**states[0], "ranks": states}, nexts


def test_a_checkpoint_of_as_many_processes_gives_each_its_own_streams_back():
    ckpt, nexts = _checkpoint(2)
    for rank in (1, 0):
        game = _game(rank, 2, seed=99)  # other streams before the resume
        restore_rng(game, ckpt)
        assert all(torch.equal(a, b) for a, b in zip((_draw(game.rng), _draw(game.zrng), _draw()), nexts[rank]))


@pytest.mark.parametrize("saved_by", [1, 2])
def test_another_number_of_processes_derives_distinct_streams_deterministically(saved_by):
    if saved_by == 1:
        game = _game(seed=3)
        _draw(game.rng, 4)
        ckpt = rng_state(game)
        latent_next = _draw(game.rng)  # a single process's training stream continues as the latent one
    else:
        ckpt, nexts = _checkpoint(2)
        latent_next = nexts[0][1]
    drawn = {}
    for rank in (0, 1, 2, 0):
        game = _game(rank, 3, seed=99)
        restore_rng(game, ckpt)
        drawn.setdefault(rank, []).append((_draw(game.rng), _draw(game.zrng), _draw()))
    assert all(torch.equal(a, b) for a, b in zip(*drawn[0]))  # the same resume gives the same streams
    for rank in (0, 1, 2):
        assert torch.equal(drawn[rank][0][1], latent_next)  # the shared latent sequence continues
    assert not torch.equal(drawn[0][0][0], drawn[1][0][0]) and not torch.equal(drawn[1][0][0], drawn[2][0][0])
    assert not torch.equal(drawn[0][0][2], drawn[1][0][2])


def test_one_process_resuming_a_multi_process_checkpoint_continues_its_latent_sequence():
    ckpt, nexts = _checkpoint(2)
    game = _game(seed=99)
    restore_rng(game, ckpt)
    assert torch.equal(_draw(game.rng), nexts[0][1])  # one stream serves both: it takes the latent one
    assert torch.equal(_draw(), nexts[0][2])  # rank 0's global RNG
