"""gankit.metrics: FID / KID / PR / DC against closed forms and naive references, calculate_metrics and
`gankit eval` on real, noise and collapsed data, the reference cache, extractors and their errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.metrics import EvalError, calculate_metrics, evaluate_images, get_extractor, reference_images
from gankit.metrics.fid import fid, frechet_distance
from gankit.metrics.kid import kid
from gankit.metrics.prdc import prdc
from gankit.metrics.reference import ReferenceCacheWarning, reference_cache_dir

FAST = ("fid", "pr", "classes")  # KID's 100 subsets cost ~2 s a call; it has its own tests
REF = 2000  # reference digits: all 10,000 take ~5 s to extract on 2 cores; the first 2000 are class-balanced


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gankit: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def holdout() -> torch.Tensor:
    return reference_images("mnist10k", "holdout")[0]


@pytest.fixture(scope="module")
def holdout_npz(holdout: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "holdout.npz"
    np.savez(path, images=holdout.permute(0, 2, 3, 1).numpy())  # the layout `gankit sample` writes
    return path


# ---------------------------------------------------------------------------------------------
# The formulas


def test_fid_of_identical_features_is_zero() -> None:
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)).double()
    assert abs(fid(f, f)) < 1e-8


def test_fid_matches_the_closed_form_for_gaussians() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # a shared eigenbasis: sqrt(S1 S2) has a closed form
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 0.5, 1.0, 1.0])
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.array([0.0, 1.0, 0.0, -1.0]), np.array([1.0, 1.0, 2.0, 0.0])
    truth = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(truth, rel=1e-9)
    x = rng.multivariate_normal(mu1, s1, size=40_000)
    y = rng.multivariate_normal(mu2, s2, size=40_000)
    assert fid(x, y) == pytest.approx(truth, rel=0.03)


def test_kid_is_zero_within_noise_for_one_distribution_and_positive_for_a_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 8, generator=gen), torch.randn(2000, 8, generator=gen)
    mean, std = kid(a, b, subsets=50, subset_size=200, seed=0)
    assert std > 0 and abs(mean) < 2 * std
    mean_shift, std_shift = kid(a, b + 0.5, subsets=50, subset_size=200, seed=0)
    assert mean_shift > 10 * std and mean_shift > 5 * std_shift


def _naive_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The definitions, one pair at a time."""
    def dist(u: np.ndarray, v: np.ndarray) -> float:
        return math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(u, v)))

    def radius(x: np.ndarray, i: int) -> float:
        return sorted(dist(x[i], x[j]) for j in range(len(x)) if j != i)[k - 1]

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    d = [[dist(r, f) for f in fake] for r in real]
    precision = sum(any(d[i][j] <= r_real[i] for i in range(len(real))) for j in range(len(fake))) / len(fake)
    recall = sum(any(d[i][j] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))) / len(real)
    density = sum(d[i][j] <= r_real[i] for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = sum(min(d[i]) <= r_real[i] for i in range(len(real))) / len(real)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_precision_recall_density_coverage_match_a_naive_reference() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 3))
    fake = rng.normal(0.4, 1.3, size=(50, 3))
    fast, slow = prdc(real, fake, k=3), _naive_prdc(real, fake, k=3)
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key
    assert 0 < fast["precision"] < 1 and 0 < fast["recall"] < 1  # a case that exercises both sides


# ---------------------------------------------------------------------------------------------
# Real data, noise, collapse


def test_eval_cli_on_held_out_digits_is_near_the_floor_and_writes_json(holdout_npz: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval.json"
    rc = main(["eval", str(holdout_npz), "--ref", "mnist10k", "--num", "1000", "--num-reference", str(REF),
               "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fid" in printed and "kid" in printed and "±" in printed and "precision" in printed
    result = json.loads(out.read_text())
    info = result["info"]
    assert info["num"] == 1000 and info["reference"] == "mnist10k" and info["split"] == "train"
    assert info["num_reference"] == REF and info["extractor"] == "mnist-cnn" and info["extractor_version"] == 1
    assert info["seed"] == 0 and info["gankit_version"] and info["metrics"] == ["fid", "kid", "pr", "dc", "classes"]
    # FID of 1000 vs 2000 samples is biased up: ~15 for 1000 other training digits, ~25 for the held-out
    # digits (mnist-cnn never saw them, its features shift a little), ~2300 for noise
    train = reference_images("mnist10k", num=REF + 1000)[0]
    floor = calculate_metrics(train[REF:], "mnist10k", metrics=("fid",), num_reference=REF)["fid"]
    assert floor < result["fid"] < min(2 * floor, 40)
    assert result["precision"] > 0.8 and result["recall"] > 0.8 and result["coverage"] > 0.8
    assert abs(result["kid"]) < 3 * result["kid_std"] + 5
    assert result["classes_present"] == 10 and result["class_kl"] < 0.02


def test_noise_and_a_repeated_image_score_terribly(holdout: torch.Tensor) -> None:
    noise = torch.randint(0, 256, (1000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bad = calculate_metrics(noise, "mnist10k", metrics=FAST, num=1000, num_reference=REF)
    assert bad["fid"] > 100 and bad["recall"] < 0.05
    repeated = calculate_metrics(holdout[:1].repeat(1000, 1, 1, 1), "mnist10k", metrics=FAST + ("dc",), num=1000,
                                 num_reference=REF)
    assert repeated["fid"] > 100
    assert repeated["recall"] < 0.01 and repeated["coverage"] < 0.01
    assert repeated["classes_present"] == 1 and repeated["max_share"] == 1.0


def test_evaluate_images_is_calculate_metrics_on_explicit_tensors(holdout: torch.Tensor) -> None:
    ref, labels = reference_images("mnist10k", num=REF)
    old = evaluate_images(holdout, ref, labels)
    new = calculate_metrics(holdout, "mnist10k", metrics=("fid", "classes"), num=1000, num_reference=REF)
    assert old["fid"] == pytest.approx(new["fid"], rel=1e-9)
    assert old["class_shares"] == new["class_shares"] and old["num_reference"] == REF
    assert old["extractor"] == "mnist-cnn-v1"


def test_samples_from_a_run_directory_are_reproducible(trained_run, tmp_path: Path) -> None:
    kwargs = {"metrics": ("fid", "classes"), "num": 200, "seed": 3, "num_reference": REF}
    a = calculate_metrics(trained_run.run_dir, "mnist10k", **kwargs)
    b = calculate_metrics(trained_run.run_dir, "mnist10k", **kwargs)
    assert a["fid"] == b["fid"] and a["info"]["num"] == 200
    assert f"step {trained_run.step}" in a["info"]["samples"] and "latent seed 3" in a["info"]["samples"]
    # the same samples written by `gankit sample` as PNGs and as .npz measure the same
    assert main(["sample", str(trained_run.run_dir), "--num", "200", "--seed", "3", "--out", f"{tmp_path}/pngs/"]) == 0
    assert main(["sample", str(trained_run.run_dir), "--num", "200", "--seed", "3", "--out", f"{tmp_path}/s.npz"]) == 0
    for path in (tmp_path / "pngs", tmp_path / "s.npz"):
        assert calculate_metrics(path, "mnist10k", **kwargs)["fid"] == a["fid"], path


def test_2d_points_are_measured_on_themselves() -> None:
    real, _ = reference_images("ring", "test", num=1000)
    good = calculate_metrics(real, "ring", metrics=("fid", "pr"), num=1000)
    assert good["info"]["extractor"] == "points" and good["fid"] < 0.01 and good["recall"] > 0.8
    collapsed = calculate_metrics(real[:1].repeat(1000, 1), "ring", metrics=("fid", "pr"), num=1000)
    assert collapsed["fid"] > 0.5 and collapsed["recall"] < 0.2
    with pytest.raises(EvalError, match="2D points"):
        calculate_metrics(real, "mnist10k", metrics=("fid",))


# ---------------------------------------------------------------------------------------------
# The reference cache


def test_reference_cache_is_written_once_reused_and_recomputed_when_corrupt(
        holdout: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gankit.metrics.reference as reference

    kwargs = {"metrics": ("fid",), "num": 1000, "num_reference": 500, "cache_dir": tmp_path}
    first = calculate_metrics(holdout, "mnist10k", **kwargs)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and "mnist10k-train-mnist-cnn" in files[0].name
    written = files[0].read_bytes()

    def no_images(*args: object, **kw: object) -> None:
        raise AssertionError("the cached reference features were not used")

    with monkeypatch.context() as m:
        m.setattr(reference, "reference_images", no_images)
        again = calculate_metrics(holdout, "mnist10k", **kwargs)
    assert again["fid"] == first["fid"] and files[0].read_bytes() == written

    damaged = bytearray(written)
    damaged[-100] ^= 0xFF  # a flipped bit in the feature data: only the checksum can tell
    files[0].write_bytes(bytes(damaged))
    with pytest.warns(ReferenceCacheWarning, match="checksum"):
        healed = calculate_metrics(holdout, "mnist10k", **kwargs)
    assert healed["fid"] == first["fid"] and files[0].read_bytes() == written

    files[0].write_bytes(written[:1000])  # truncated
    with pytest.warns(ReferenceCacheWarning, match="ignored and recomputed"):
        calculate_metrics(holdout, "mnist10k", **kwargs)
    assert files[0].read_bytes() == written


def test_reference_cache_defaults_to_gankit_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    assert reference_cache_dir() == tmp_path / "reference"
    monkeypatch.delenv("GANKIT_CACHE")
    assert reference_cache_dir() == Path.home() / ".cache" / "gankit" / "reference"


# ---------------------------------------------------------------------------------------------
# Extractors


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FID Inception architecture with random weights, saved the way the real file is (torch.save)."""
    from gankit.metrics.inception import FIDInceptionV3

    path = tmp_path_factory.mktemp("inception") / "random.pth"
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), path)
    return path


def test_inception_loads_a_state_dict_and_gives_2048_features(random_inception: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ext = get_extractor(f"inception:{random_inception}")
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    feats, logits = ext.extract(gray)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64 and logits is None
    monkeypatch.setenv("GANKIT_INCEPTION_WEIGHTS", str(random_inception))
    ext2 = get_extractor("inception")
    assert ext2.key == ext.key and ext2.info["weights"] == str(random_inception)


def test_inception_input_matches_pytorch_fid_preprocessing() -> None:
    from gankit.metrics.inception import fid_input

    x = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    expected = torch.nn.functional.interpolate(x.float().div(255).repeat(1, 3, 1, 1), size=(299, 299),
                                               mode="bilinear", align_corners=False) * 2 - 1
    assert torch.allclose(fid_input(x), expected)


def test_a_wrong_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(EvalError, match="not the FID Inception weights"):
        get_extractor(f"inception:{path}")


def test_missing_inception_weights_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      holdout_npz: Path, capsys: pytest.CaptureFixture) -> None:
    from gankit.metrics.inception import WEIGHTS_FILE, WEIGHTS_URL

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANKIT_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(EvalError) as err:
        get_extractor("inception")
    message = str(err.value)
    assert WEIGHTS_FILE in message and WEIGHTS_URL in message and str(tmp_path / "cache" / WEIGHTS_FILE) in message
    rc = main(["eval", str(holdout_npz), "--ref", "mnist10k", "--extractor", "inception", "--metrics", "fid"])
    assert rc == 2 and WEIGHTS_URL in _error_line(capsys.readouterr().err)


def test_unknown_names_get_one_line_errors_with_suggestions(holdout_npz: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [(["--metrics", "fid,presicion"], "unknown metric 'presicion'"),
             (["--metrics", "fdi"], "did you mean 'fid'"),
             (["--extractor", "incepton"], "did you mean 'inception'"),
             (["--split", "holdot"], "did you mean 'holdout'"),
             (["--metrics", "kid", "--ref", "mnsit10k"], "did you mean 'mnist10k'"),
             (["--metrics", "classes", "--extractor", "points"], "points")]
    for extra, expected in cases:
        argv = ["eval", str(holdout_npz), "--ref", "mnist10k", *extra]
        assert main(argv) == 2, extra
        assert expected in _error_line(capsys.readouterr().err), extra


def test_classifier_command_trains_a_usable_extractor(tmp_path: Path, holdout: torch.Tensor,
                                                      capsys: pytest.CaptureFixture) -> None:
    from safetensors import safe_open

    out = tmp_path / "digits.safetensors"
    rc = main(["classifier", "--data", "mnist10k", "--epochs", "1", "--limit", "512", "--out", str(out)])
    assert rc == 0 and "held-out accuracy" in capsys.readouterr().out
    with safe_open(str(out), "pt") as fh:
        info = json.loads(fh.metadata()["info"])
    assert (info["channels"], info["resolution"], info["num_classes"]) == (1, 28, 10)
    assert info["version"] == 1 and 0 <= info["test_accuracy"] <= 1 and info["test_images"] == 1000
    result = calculate_metrics(holdout, "mnist10k", metrics=("fid", "classes"), num=200, num_reference=500,
                               extractor=f"classifier:{out}")
    assert result["info"]["extractor"] == f"classifier:{out}" and result["num_classes"] == 10
    with pytest.raises(EvalError, match="gankit classifier"):
        get_extractor(f"classifier:{tmp_path / 'missing.safetensors'}")
