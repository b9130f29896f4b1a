"""gankit.models.init (``model.init``): the DCGAN scheme's N(0, 0.02) weights and N(1, 0.02) norm scales,
Xavier's bound, ``default`` leaving PyTorch's initialisation alone, and spectral-normalised layers whose first
forward pass already divides by the new weights' top singular value."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from conftest import assert_states_equal
from gankit.models.init import init_weights


def _net() -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(16, 32, 4), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64, affine=False), nn.Flatten(),
                         nn.Linear(64 * 2 * 2, 128), nn.BatchNorm1d(128), nn.Linear(128, 1),
                         nn.LayerNorm(1))


def test_dcgan_scheme():
    torch.manual_seed(0)
    net = _net()
    init_weights(net, "dcgan")
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.weight.numel() > 1000:
            assert m.weight.mean().item() == pytest.approx(0.0, abs=0.002)
            assert m.weight.std().item() == pytest.approx(0.02, rel=0.1)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            assert m.weight.mean().item() == pytest.approx(1.0, abs=0.01)
            assert 0.01 < m.weight.std().item() < 0.03
            assert torch.count_nonzero(m.bias) == 0
    ln = net[9]
    assert torch.equal(ln.weight, torch.ones(1)) and torch.equal(ln.bias, torch.zeros(1))  # not a scheme's target


def test_xavier_scheme():
    torch.manual_seed(0)
    net = _net()
    init_weights(net, "xavier")
    lin = net[6]
    bound = math.sqrt(6 / (lin.in_features + lin.out_features))
    assert lin.weight.abs().max().item() <= bound
    assert lin.weight.abs().max().item() > 0.95 * bound  # uniform on the whole interval, not a narrower one
    assert lin.weight.var().item() == pytest.approx(bound ** 2 / 3, rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert torch.equal(net[1].weight, torch.ones(32)) and torch.equal(net[7].weight, torch.ones(128))


def test_default_changes_nothing_and_the_schemes_follow_the_global_seed():
    torch.manual_seed(0)
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = torch.get_rng_state()
    init_weights(net, "default")
    assert_states_equal(net.state_dict(), before)
    assert torch.equal(torch.get_rng_state(), state)  # draws nothing, so the next model starts as without it
    for scheme in ("dcgan", "xavier"):
        nets = []
        for _ in range(2):
            torch.manual_seed(3)
            nets.append(_net())
            init_weights(nets[-1], scheme)
        assert_states_equal(nets[0].state_dict(), nets[1].state_dict())


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown init scheme 'kaiming'"):
        init_weights(_net(), "kaiming")


@pytest.mark.parametrize("scheme", ["dcgan", "xavier"])
def test_spectral_norm_layers_are_initialised_through_their_original(scheme):
    torch.manual_seed(0)
    lin = spectral_norm(nn.Linear(128, 16))  # wide: well-separated singular values
    conv = spectral_norm(nn.Conv2d(4, 8, 3))
    net = nn.Sequential(lin, nn.ReLU(), nn.Flatten(), nn.Linear(16, 1))
    init_weights(net, scheme)
    init_weights(conv, scheme)
    original = lin.parametrizations.weight.original
    if scheme == "dcgan":
        assert original.std().item() == pytest.approx(0.02, rel=0.1)  # the stored tensor took the scheme
    else:
        assert original.abs().max().item() <= math.sqrt(6 / (128 + 16))
    assert torch.count_nonzero(lin.bias) == 0
    # in eval mode the power iteration does not advance: the weight is divided by the singular value
    # estimated from the re-converged vectors, which must be the new weights' own (the vectors of the
    # weights before the scheme give a norm 10 to 100 times too large here); power iteration approaches
    # the top singular value from below, so the norm is 1 or a little above
    for m in (lin, conv):
        m.eval()
        with torch.no_grad():
            w = m.weight.flatten(1)
        assert 0.999 < torch.linalg.matrix_norm(w, 2).item() < 1.03
