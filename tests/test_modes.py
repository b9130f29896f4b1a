"""gankit.metrics.modes and the stacked-mnist dataset: the PacGAN 2D protocol against closed forms,
stacked MNIST on real and collapsed samples against the statistics of uniform sampling, `gankit eval`."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.config import DataConfig
from gankit.data import DataError, TensorSource, build_dataset
from gankit.data.stacked import mode_of, stack_digits
from gankit.data.toy2d import MIXTURES, grid_modes, mixture_points, ring_modes
from gankit.metrics import EvalError, default_extractor, get_extractor, reference_images
from gankit.metrics.modes import (classify_channels, pacgan_modes, stacked_mnist_floor, stacked_mnist_modes,
                                  stacked_mode_stats)

REAL = 2000  # real stacked samples: 6000 digits to classify, ~3 s on 2 cores


def _uniform_expectations(n: int, k: int) -> tuple[float, float]:
    """E[distinct modes] and E[KL(p_hat || uniform)] of n draws uniform over k modes, exactly: each mode's
    count is Binomial(n, 1/k), so both are k times a sum over one binomial pmf."""
    c = np.arange(1, n + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in c])
               + c * math.log(1 / k) + (n - c) * math.log1p(-1 / k))
    kl = math.log(k) + k * float((np.exp(log_pmf) * (c / n) * np.log(c / n)).sum())
    return k * (1 - (1 - 1 / k) ** n), kl


@pytest.fixture(scope="module")
def real_stacked() -> tuple[torch.Tensor, torch.Tensor]:
    src = build_dataset(DataConfig(name="stacked-mnist", limit=REAL))
    return src.data, src.labels


@pytest.fixture(scope="module")
def real_read(real_stacked) -> torch.Tensor:
    """The modes the classifier reads in the real samples (classified once for the module)."""
    return mode_of(classify_channels(real_stacked[0]))


# ---------------------------------------------------------------------------------------------
# The PacGAN 2D protocol


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_points_on_every_mode_centre_capture_all_modes_with_zero_kl(name: str) -> None:
    centres = MIXTURES[name][0]()
    r = pacgan_modes(centres.repeat(3, 1), name)
    assert r == {"modes": len(centres), "num_modes": len(centres), "high_quality": 1.0,
                 "reverse_kl": pytest.approx(0.0, abs=1e-12), "spread": 0.0, "num": 3 * len(centres)}


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_spread_of_real_points_is_the_truncated_gaussian_std_and_catches_narrow_modes(name: str) -> None:
    centres, std = MIXTURES[name][0](), MIXTURES[name][1]
    real, _ = mixture_points(centres, std, 20_000, seed=0)
    # a 2D normal cut at radius 3: E[r^2 | r < 3] = (2 - 11 e^-4.5) / (1 - e^-4.5), per coordinate half
    expected = math.sqrt((2 - 11 * math.exp(-4.5)) / (1 - math.exp(-4.5)) / 2)
    assert pacgan_modes(real, name)["spread"] == pytest.approx(expected, abs=0.01)
    nearest = torch.cdist(real, centres).argmin(1)
    narrow = centres[nearest] + 0.3 * (real - centres[nearest])  # every mode drawn at 0.3 of its std
    r = pacgan_modes(narrow, name)
    assert r["high_quality"] == 1.0 and r["spread"] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("name, k", [("ring", 8), ("grid", 25)])
def test_all_points_on_one_mode_give_one_mode_and_kl_log_k(name: str, k: int) -> None:
    centre = MIXTURES[name][0]()[3]
    r = pacgan_modes(centre.repeat(50, 1), name)
    assert r["modes"] == 1 and r["num_modes"] == k and r["high_quality"] == 1.0
    assert r["reverse_kl"] == pytest.approx(math.log(k), rel=1e-12)


def test_reverse_kl_counts_only_high_quality_samples() -> None:
    modes = ring_modes()
    far = torch.tensor([[5.0, 5.0]]).repeat(4, 1)  # nearest mode 1, but far: it belongs to no mode
    points = torch.cat([modes[0].repeat(3, 1), modes[1].repeat(1, 1), far])
    r = pacgan_modes(points, "ring")
    assert r["modes"] == 2 and r["high_quality"] == 0.5
    assert r["reverse_kl"] == pytest.approx(0.75 * math.log(0.75 * 8) + 0.25 * math.log(0.25 * 8), rel=1e-12)


def test_high_quality_means_strictly_within_three_std() -> None:
    std = MIXTURES["grid"][1]
    centre = grid_modes()[7]
    inside = centre + torch.tensor([2.99 * std, 0.0])
    outside = centre + torch.tensor([0.0, 3.01 * std])
    assert pacgan_modes(torch.stack([inside, outside]), "grid")["high_quality"] == 0.5


def test_points_far_from_every_mode_are_never_high_quality() -> None:
    points = torch.tensor([[0.5, 0.5], [10.0, -10.0], [float("nan"), 0.0]])
    for name in ("ring", "grid"):
        r = pacgan_modes(points, name)
        assert r["modes"] == 0 and r["high_quality"] == 0.0
        assert math.isnan(r["reverse_kl"])  # no sample in any mode: the histogram is undefined
        assert math.isnan(r["spread"])


def test_real_test_points_match_the_gaussian_closed_form() -> None:
    points, _ = reference_images("ring", "test", num=4000)
    r = pacgan_modes(points, "ring")
    # a 2D isotropic Gaussian lies within 3 std with probability 1 - exp(-9 / 2) = 0.9889
    assert r["modes"] == 8 and abs(r["high_quality"] - (1 - math.exp(-4.5))) < 0.01
    assert r["reverse_kl"] < 0.01


def test_modes2d_refuses_unknown_mixtures_and_wrong_shapes() -> None:
    with pytest.raises(EvalError, match="ring and grid"):
        pacgan_modes(torch.zeros(4, 2), "mnist10k")
    with pytest.raises(EvalError, match=r"\(N, 2\)"):
        pacgan_modes(torch.zeros(4, 3), "ring")


def test_eval_cli_on_ring_points(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    points, _ = reference_images("ring", "test", num=1000)
    npz = tmp_path / "ring.npz"
    np.savez(npz, points=points.numpy())
    out = tmp_path / "ring.json"
    assert main(["eval", str(npz), "--ref", "ring", "--metrics", "modes2d", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "high_quality" in table and "reverse_kl" in table
    result = json.loads(out.read_text())
    assert result["modes"] == 8 and result["num_modes"] == 8 and result["num"] == 1000
    assert result["info"]["metrics"] == ["modes2d"] and result["info"]["extractor"] is None


# ---------------------------------------------------------------------------------------------
# The stacked-mnist dataset


def test_stacked_digits_put_three_digits_in_the_channels_with_their_triple_as_label() -> None:
    digits = torch.arange(20, dtype=torch.uint8).view(20, 1, 1).expand(20, 28, 28)  # digit i is all i
    x, y = stack_digits(digits, torch.arange(20) % 10, 500, seed=3)
    assert x.shape == (500, 3, 28, 28) and x.dtype == torch.uint8
    which = x[:, :, 0, 0].long()  # the index of the digit in each channel
    assert torch.equal(y, (which % 10 * torch.tensor([100, 10, 1])).sum(1))
    assert len(which.unique()) == 20  # every digit is drawn, in every channel
    assert torch.equal(stack_digits(digits, torch.arange(20) % 10, 500, seed=3)[0], x)


def test_stacked_mnist_dataset_is_fixed_sized_and_fitted() -> None:
    src = build_dataset(DataConfig(name="stacked-mnist", stacked_size=300))
    assert src.data.shape == (300, 3, 28, 28) and src.data.dtype == torch.uint8 and src.is_image
    assert src.num_classes == 1000 and src.labels.shape == (300,) and int(src.labels.max()) < 1000
    again = build_dataset(DataConfig(name="stacked-mnist", stacked_size=300))
    assert torch.equal(src.data, again.data) and torch.equal(src.labels, again.labels)
    prefix = build_dataset(DataConfig(name="stacked-mnist", stacked_size=300, limit=40))
    assert torch.equal(prefix.data, src.data[:40]) and torch.equal(prefix.labels, src.labels[:40])
    small = build_dataset(DataConfig(name="stacked-mnist", stacked_size=8, resolution=32))
    assert small.shape == (3, 32, 32)
    x, _ = src.batch(torch.arange(4))
    assert x.min() >= -1 and x.max() <= 1


def test_stacked_mnist_can_stack_torchvision_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    import gankit.data.vision as vision

    asked = []

    def fake_split(name: str, cfg: DataConfig, train: bool = True) -> TensorSource:
        asked.append((name, cfg.limit, cfg.resolution, cfg.channels, train))
        digits = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, 1, 28, 28)
        return TensorSource(digits.contiguous(), torch.arange(30) % 10)

    monkeypatch.setattr(vision, "load_split", fake_split)
    src = build_dataset(DataConfig(name="stacked-mnist", stacked_digits="mnist", stacked_size=50, limit=20,
                                   resolution=32))
    # the plain digits are read whole; limit and resolution apply to the stacked images
    assert asked == [("mnist", None, None, None, True)]
    assert src.data.shape == (20, 3, 32, 32) and int(src.data.max()) < 30 and src.num_classes == 1000


def test_stacked_mnist_from_missing_torchvision_files_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MNIST/raw"):
        build_dataset(DataConfig(name="stacked-mnist", stacked_digits="mnist", root=str(tmp_path)))


# ---------------------------------------------------------------------------------------------
# Stacked MNIST modes


def test_real_stacked_samples_score_what_uniform_sampling_predicts(real_stacked, real_read) -> None:
    labels, read = real_stacked[1], real_read
    # R, G, B are read in the dataset's order: the modes are the labels (98.6 % per digit, so ~96 % per triple)
    assert (read == labels).double().mean() > 0.93
    r = stacked_mode_stats(read)
    modes, kl = _uniform_expectations(REAL, 1000)  # 864.8 modes and KL 0.285 at N = 2000
    assert r["num"] == REAL and r["num_modes"] == 1000
    assert abs(r["modes"] - modes) < 30 and abs(r["kl"] - kl) < 0.05


def test_real_data_floor_is_uniform_sampling_too() -> None:
    r = stacked_mnist_floor(300, seed=1)
    modes, kl = _uniform_expectations(300, 1000)  # 259.3 modes and KL 1.40 at N = 300
    assert r["num"] == 300 and abs(r["modes"] - modes) < 20 and abs(r["kl"] - kl) < 0.1
    with pytest.raises(EvalError, match=">= 1"):
        stacked_mnist_floor(0)


def test_one_repeated_triple_is_one_mode_with_kl_log_1000(real_stacked) -> None:
    x, _ = real_stacked
    r = stacked_mnist_modes(x[5:6].repeat(100, 1, 1, 1))
    assert r["modes"] == 1 and r["kl"] == pytest.approx(math.log(1000), rel=1e-12) and r["num"] == 100


def test_stacked_kl_splits_into_digit_frequencies_and_dependence() -> None:
    # every combination of three biased digit lists: an exact product histogram, so no dependence
    digits = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # 0 drawn 3 times as often as each other digit
    triples = torch.tensor(list(itertools.product(digits, repeat=3)))
    r = stacked_mode_stats(mode_of(triples))
    q = np.bincount(digits, minlength=10) / len(digits)
    assert r["digit_kl"] == pytest.approx(3 * float((q * np.log(10 * q)).sum()), rel=1e-9)
    assert r["dependence"] == pytest.approx(0.0, abs=1e-9)
    # any histogram: dependence is the total correlation, sum of channel entropies - joint entropy
    digits3 = torch.randint(10, (500, 3), generator=torch.Generator().manual_seed(0))
    digits3[:200, 1] = digits3[:200, 0]  # tie G to R in 40 % of the samples
    r = stacked_mode_stats(mode_of(digits3))

    def entropy(x: torch.Tensor) -> float:
        p = torch.unique(x, dim=0, return_counts=True)[1].double() / len(x)
        return float(-(p * p.log()).sum())
    assert r["dependence"] == pytest.approx(sum(entropy(digits3[:, c]) for c in range(3)) - entropy(digits3),
                                            rel=1e-9)
    # balanced digits, but all three channels equal: 10 of the 1000 modes, all of it dependence
    same = stacked_mode_stats(torch.arange(10).repeat(50) * 111)
    assert same["modes"] == 10 and same["digit_kl"] == pytest.approx(0.0, abs=1e-12)
    assert same["dependence"] == pytest.approx(2 * math.log(10), rel=1e-12)
    assert same["kl"] == pytest.approx(math.log(100), rel=1e-12)


def test_stacked_refuses_other_images() -> None:
    with pytest.raises(EvalError, match=r"\(N, 3, 28, 28\)"):
        stacked_mnist_modes(torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(EvalError, match="uint8"):
        stacked_mnist_modes(torch.zeros(4, 3, 28, 28))


def test_eval_cli_stacked_on_an_npz(real_stacked, real_read, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x, _ = real_stacked
    npz, out = tmp_path / "stacked.npz", tmp_path / "stacked.json"
    np.savez(npz, images=x[:300].permute(0, 2, 3, 1).numpy())  # the layout `gankit sample` writes
    assert main(["eval", str(npz), "--ref", "stacked-mnist", "--metrics", "stacked", "--num", "200",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "modes" in table and "kl" in table
    result = json.loads(out.read_text())
    assert result == {**stacked_mode_stats(real_read[:200]), "info": result["info"]}
    assert result["info"]["num"] == 200 and result["info"]["extractor"] is None


def test_eval_stacked_reads_32px_samples_like_28px_ones(real_stacked, real_read, tmp_path: Path) -> None:
    # a run at data.resolution 32 (StyleGAN) writes 32 px samples; the metric resizes them back to 28
    from gankit.metrics.features import fit_to

    x = fit_to(real_stacked[0][:300], 32, 3).mul(255).round().to(torch.uint8)
    npz, out = tmp_path / "stacked32.npz", tmp_path / "stacked32.json"
    np.savez(npz, images=x.permute(0, 2, 3, 1).numpy())
    assert main(["eval", str(npz), "--ref", "stacked-mnist", "--metrics", "stacked", "--num", "300",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    agree = stacked_mode_stats(real_read[:300])
    assert abs(result["modes"] - agree["modes"]) <= 6 and abs(result["kl"] - agree["kl"]) < 0.05


def test_stacked_features_are_the_digit_features_of_each_channel(real_stacked) -> None:
    x, _ = real_stacked
    assert default_extractor("stacked-mnist") == "mnist-cnn-stacked"
    stacked, digit = get_extractor("mnist-cnn-stacked"), get_extractor("mnist-cnn")
    feats, logits = stacked.extract(x[:16])
    assert feats.shape == (16, 384) and logits is None
    per_channel = torch.cat([digit.extract(x[:16, c:c + 1])[0] for c in range(3)], 1)
    assert torch.allclose(feats, per_channel, atol=1e-6)
    with pytest.raises(EvalError, match="3-channel"):
        stacked.extract(x[:4, :1])


def test_stacked_preset_trains_and_counts_modes_during_training(tmp_path: Path) -> None:
    from gankit.config import load
    from gankit.train import train

    preset = Path(__file__).resolve().parents[1] / "configs" / "stacked_mnist.yaml"
    cfg = load(preset, ["data.stacked_size=64", "train.batch_size=16", "model.latent_dim=8",
                        "model.generator.width=4", "model.discriminator.width=4", "train.device=cpu",
                        "train.steps=2", "train.max_seconds=null", "eval.every=2", "eval.num=40", "log.every=1",
                        "log.sample_every=0", "log.progress=false", "log.tensorboard=false", "log.plot=false"])
    assert cfg.eval.metrics == ["stacked"]
    result = train(cfg, tmp_path / "run")
    assert result.step == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/modes" in r]
    assert len(evals) == 1 and 1 <= evals[0]["eval/modes"] <= 40 and evals[0]["eval/num_modes"] == 1000
