"""Every random stream of a run, in one place: their seeds (named offsets of train.seed), their state in
a checkpoint and its restore, in one process or many.

- ``train.seed`` itself: model initialisation (the global torch RNG) and, via the batch stream, data order;
- ``seed + LATENTS``: the training stream (latents, instance noise, DiffAugment; a translation game's
  masks and history pool); in a multi-process run the shared latent stream, beside per-process noise
  streams and global RNGs derived from (seed, rank) by :func:`rank_seed`;
- fixed streams of their own for the sample grid, EMA BatchNorm re-estimation, the diversity probe,
  in-training evaluation and self-conditioning's clustering, so none of them disturbs training.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gankit.distributed import Dist

LATENTS = 1
SAMPLE_GRID = 10_007
EMA_RECALIBRATION = 20_011
DIVERSITY = 30_011
EVALUATION = 40_009
CLUSTERING = 50_021


def rank_seed(seed: int, rank: int, stream: str) -> int:
    """A seed of process ``rank``'s own ``stream``, independent of seed + k arithmetic (SHA-256)."""
    digest = hashlib.sha256(f"gankit/{seed}/{rank}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def random_streams(ctx: Dist, seed: int, device: torch.device
                   ) -> tuple[torch.Generator, torch.Generator | None]:
    """(per-sample noise stream, shared latent stream or None). One process: a single stream seeded
    seed + LATENTS serves both. Several: the latent stream is that same stream in every process, the
    noise stream and the global RNG (dropout) are reseeded per process. Call after building the models,
    so that their initialisation stays identical."""
    if not ctx.enabled:
        return torch.Generator(device=device).manual_seed(seed + LATENTS), None
    torch.manual_seed(rank_seed(seed, ctx.rank, "torch"))
    noise = torch.Generator(device=device).manual_seed(rank_seed(seed, ctx.rank, "noise"))
    return noise, torch.Generator(device=device).manual_seed(seed + LATENTS)


def rng_state(game: Any) -> dict[str, Any]:
    """This process's streams as a checkpoint holds them (``game``: has ``rng``, ``zrng``, ``dist``, ``device``)."""
    return {"torch": torch.get_rng_state(), "train": game.rng.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if game.device.type == "cuda" else None,
            **({} if game.zrng is None else {"latent": game.zrng.get_state(), "rank": game.dist.rank})}


def restore_rng(game: Any, rng: dict[str, Any]) -> None:
    """Continue the streams of ``rng`` (a checkpoint's, or a snapshot of this process's); in a multi-process
    run each process takes its own back, or derives them when the checkpoint has none for it."""
    torch.set_rng_state(rng["torch"])
    game.rng.set_state(rng["train"])
    if rng.get("cuda") is not None and game.device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])
    ctx = game.dist
    if not ctx.enabled:
        if "latent" in rng:  # a distributed run's checkpoint: continue its latent sequence
            game.rng.set_state(rng["latent"])
        return
    ranks, own = rng.get("ranks"), None
    if ranks is not None and len(ranks) == ctx.world_size:  # a checkpoint of as many processes
        own = ranks[ctx.rank]
    elif rng.get("rank") == ctx.rank and "latent" in rng:  # this process's own snapshot (rollback)
        own = rng
    if own is not None:
        torch.set_rng_state(own["torch"])
        game.rng.set_state(own["train"])
        if own.get("cuda") is not None and game.device.type == "cuda":
            torch.cuda.set_rng_state_all(own["cuda"])
    else:  # another number of processes (or a single-process checkpoint): derive, deterministically
        base = hashlib.sha256(rng["train"].numpy().tobytes()).hexdigest()
        torch.manual_seed(rank_seed(int(base[:15], 16), ctx.rank, "torch"))
        game.rng.manual_seed(rank_seed(int(base[:15], 16), ctx.rank, "noise"))
    assert game.zrng is not None
    game.zrng.set_state(rng.get("latent", rng["train"]))
