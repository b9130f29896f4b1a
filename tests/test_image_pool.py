"""CycleGAN's history of generated images (Shrivastava et al. 2017), which its Ds judge: new images pass
through while it fills, size 0 turns it off, a full pool swaps half of the images with stored ones, and a
checkpointed pool continues exactly (the same draws, the same images)."""
from __future__ import annotations

import io

import pytest
import torch

from gankit.games.cyclegan import ImagePool


def _batch(start: int, n: int = 4) -> torch.Tensor:
    """Images (N, 3, 2, 2) that carry their own number, so every output can be traced to its source."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()


def _ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def test_a_filling_pool_passes_the_new_images_through_and_keeps_them():
    pool, gen = ImagePool(6), torch.Generator().manual_seed(0)
    x = _batch(0).requires_grad_(True)
    out = pool.query(x * 1.0, gen)
    assert torch.equal(out, x.detach()) and not out.requires_grad  # the Ds' input: no path back into G
    assert _ids(pool.query(_batch(4, 2), gen)) == [4, 5]
    assert pool.count == 6 and _ids(pool.images) == [0, 1, 2, 3, 4, 5]
    # the last free slots fill first, then swapping starts within the same batch
    pool = ImagePool(3)
    out = pool.query(_batch(0, 40), torch.Generator().manual_seed(1))
    assert _ids(out)[:3] == [0, 1, 2] and pool.count == 3
    assert sum(i < n for n, i in enumerate(_ids(out))) > 5  # older images came back out


def test_size_zero_is_off_and_draws_nothing():
    pool, gen = ImagePool(0), torch.Generator().manual_seed(0)
    state = gen.get_state()
    x = _batch(0, 8)
    for _ in range(3):
        assert torch.equal(pool.query(x, gen), x)
    assert torch.equal(gen.get_state(), state)  # the training stream is exactly as without a pool
    assert pool.state_dict() == {"count": 0, "images": None}


def test_a_full_pool_swaps_half_of_the_images_with_stored_ones():
    size, pool, gen = 50, ImagePool(50), torch.Generator().manual_seed(0)
    pool.query(_batch(0, size), gen)
    queried, swapped, seen = 0, 0, set(range(size))
    for start in range(size, size + 4000, 8):
        out = _ids(pool.query(_batch(start, 8), gen))
        for i, image in zip(range(start, start + 8), out):  # in order: a swapped-in image may come back out
            queried += 1
            if image != i:
                swapped += 1
                assert image in seen  # an image that was stored, returned once and replaced by the new one
                seen.discard(image)
                seen.add(i)
        stored = _ids(pool.images)
        assert sorted(stored) == sorted(seen) and len(stored) == size
    assert queried == 4000 and 0.47 < swapped / queried < 0.53
    # every slot is replaced over time, uniformly: none of the first images is left after 4000 queries
    assert min(_ids(pool.images)) >= size


def test_the_same_generator_gives_the_same_outputs():
    outs = []
    for _ in range(2):
        pool, gen = ImagePool(5), torch.Generator().manual_seed(7)
        outs.append(torch.cat([pool.query(_batch(8 * k, 8), gen) for k in range(6)]))
    assert torch.equal(*outs)
    # two draws per image, whatever the pool's state: the stream stays aligned with the rest of the step
    gen, ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    ImagePool(5).query(_batch(0, 8), gen)
    torch.rand(8, generator=ref)
    torch.randint(5, (8,), generator=ref)
    assert torch.equal(gen.get_state(), ref.get_state())


@pytest.mark.parametrize("filled", [0, 3, 20])
def test_a_checkpointed_pool_continues_exactly(filled):
    pool, gen = ImagePool(6), torch.Generator().manual_seed(3)
    if filled:
        pool.query(_batch(100, filled), gen)
    buf = io.BytesIO()
    torch.save({"pool": pool.state_dict(), "gen": gen.get_state()}, buf)  # as a checkpoint would hold it
    saved = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert saved["pool"]["count"] == min(filled, 6)
    if filled:
        assert saved["pool"]["images"].shape == (min(filled, 6), 3, 2, 2)
    expected = [pool.query(_batch(200 + 8 * k, 8), gen) for k in range(4)]

    resumed, gen2 = ImagePool(6), torch.Generator()
    resumed.load_state_dict(saved["pool"], torch.zeros(()))
    gen2.set_state(saved["gen"])
    got = [resumed.query(_batch(200 + 8 * k, 8), gen2) for k in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert torch.equal(resumed.images, pool.images) and resumed.count == pool.count


def test_loading_follows_the_device_and_dtype_of_the_game():
    pool = ImagePool(4)
    pool.query(_batch(0, 2), torch.Generator().manual_seed(0))
    resumed = ImagePool(4)
    resumed.load_state_dict(pool.state_dict(), torch.zeros((), dtype=torch.float64))
    assert resumed.images.dtype == torch.float64 and resumed.images.shape == (4, 3, 2, 2)
    assert _ids(resumed.images[:2]) == [0, 1] and resumed.count == 2
