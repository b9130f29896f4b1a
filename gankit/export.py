"""Export a trained generator for use outside gankit: ONNX, TorchScript, or a Hugging Face-style folder.

Every format is checked after writing: the exported model is run again on fresh latents and compared
with PyTorch, and the export is refused when they disagree (or when the weights are not finite).
"""
from __future__ import annotations

import json
import reprlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml

from gankit.checkpoint import atomic_write_bytes
from gankit.generator import LoadedGenerator
from gankit.sampling import check_finite, latents, write_samples

FORMATS = ("onnx", "torchscript", "hf")
TOLERANCE = 1e-4  # max |exported - PyTorch| over a batch of model-range pixels
OPSET = 17


class ExportError(RuntimeError):
    """An export that cannot be made or does not reproduce PyTorch's outputs."""


class _Sampler(nn.Module):
    """G as a graph with one signature: ``(z)`` or, for a conditional G, ``(z, labels)``."""

    def __init__(self, net: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.net, self.conditional = net, conditional

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, y) if self.conditional else self.net(z)


def describe(gen: LoadedGenerator) -> dict[str, Any]:
    """What a user of an exported file needs to feed it and decode its output."""
    return {"latent_dim": gen.latent_dim, "output_shape": list(gen.data_shape), "num_classes": gen.num_classes,
            "normalize": gen.config.data.normalize, "step": gen.step, "ema": gen.is_ema,
            "generator": gen.config.model.generator["name"]}


def _inputs(gen: LoadedGenerator, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    z = latents(n, gen.latent_dim, seed)
    return (z,) if gen.num_classes is None else (z, torch.arange(n) % gen.num_classes)


def _reference(sampler: nn.Module, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    with torch.no_grad():
        return sampler(*inputs).float().numpy()


def _compare(got: np.ndarray, want: np.ndarray, what: str) -> float:
    if got.shape != want.shape:
        raise ExportError(f"the {what} export returns shape {got.shape}, PyTorch {want.shape}")
    if not np.isfinite(got).all():
        raise ExportError(f"the {what} export returns NaN or Inf where PyTorch's outputs are finite; not written")
    diff = float(np.abs(got - want).max())
    if not diff <= TOLERANCE:
        raise ExportError(f"the {what} export differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}); not written")
    return diff


def export(gen: LoadedGenerator, fmt: str, out: str | Path, *, force: bool = False,
           **card: Any) -> tuple[Path, float | None]:
    """Write ``gen`` as ``fmt`` to ``out``; returns (path, max |difference| to PyTorch of the check).
    ``force``: hf only, overwrite the files of an earlier export in the folder ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_exportable(gen)
    if fmt == "onnx":
        return export_onnx(gen, Path(out))
    if fmt == "torchscript":
        return export_torchscript(gen, Path(out))
    return export_hf(gen, Path(out), force=force, **card), None


def check_exportable(gen: LoadedGenerator) -> None:
    """Refuse a generator whose weights or outputs hold NaN or Inf before anything is written; moves it to
    the CPU (exports are device-independent files; CPU tracing keeps them so)."""
    check_finite(gen.net, "the generator")
    gen.net.to("cpu").eval()
    sampler = _Sampler(gen.net, gen.num_classes is not None).eval()
    if not np.isfinite(_reference(sampler, _inputs(gen, 5, 1))).all():
        raise ExportError("the generator's outputs hold NaN or Inf for a batch of 5 latents (finite weights that "
                          "overflow); nothing written")


def export_onnx(gen: LoadedGenerator, out: Path) -> tuple[Path, float]:
    """An ONNX graph with a dynamic batch: inputs ``z`` (N, latent_dim) float32 [and ``labels`` (N,) int64],
    output ``images`` (N, *output_shape) in the model's range; gankit's description in the metadata."""
    import io
    import warnings

    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'gankit[export]'") from None
    sampler = _Sampler(gen.net, gen.num_classes is not None).eval()
    names = ["z"] if gen.num_classes is None else ["z", "labels"]
    buf = io.BytesIO()  # in memory: the only file written is ``out``, atomically, once checked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer notes
        torch.onnx.export(sampler, _inputs(gen, 2, 0), buf, dynamo=False, input_names=names,
                          output_names=["images"], opset_version=OPSET,
                          dynamic_axes={**{k: {0: "batch"} for k in names}, "images": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    model.doc_string = "gankit generator; metadata key 'gankit' describes inputs and output range"
    onnx.helper.set_model_props(model, {"gankit": json.dumps(describe(gen))})
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs = _inputs(gen, 5, 1)  # another batch size than the traced one: the batch must be dynamic
    got = session.run(None, {k: v.numpy() for k, v in zip(names, inputs)})[0]
    diff = _compare(got, _reference(sampler, inputs), "ONNX")
    atomic_write_bytes(out, data)
    return out, diff


def export_torchscript(gen: LoadedGenerator, out: Path) -> tuple[Path, float]:
    """A traced TorchScript module (``torch.jit.load(path)``), forward ``(z)`` or ``(z, labels)``;
    gankit's description is the extra file ``gankit.json``."""
    import io
    import warnings

    sampler = _Sampler(gen.net, gen.num_classes is not None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(sampler, _inputs(gen, 2, 0), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"gankit.json": json.dumps(describe(gen))})
        buf.seek(0)
        loaded = torch.jit.load(buf)
    inputs = _inputs(gen, 5, 1)
    with torch.no_grad():
        diff = _compare(loaded(*inputs).numpy(), _reference(sampler, inputs), "TorchScript")
    atomic_write_bytes(out, buf.getvalue())
    return out, diff


def export_hf(gen: LoadedGenerator, out: Path, *, name: str | None = None, metrics: dict[str, Any] | None = None,
              source: str = "", grid: int = 64, force: bool = False) -> Path:
    """A folder for the Hugging Face Hub: ``config.json``, ``model.safetensors``, ``README.md`` (a model card
    with the config, the metrics and a sample grid) and ``samples.png``. ``name``: how users load it
    (default the folder's name; ``user/repo`` for the Hub, ``zoo:NAME`` for the zoo); ``source``: how it
    was trained, for the card. ``force``: overwrite those files where ``out`` holds them (default: refuse)."""
    import shutil

    from gankit.generator_folder import save_folder

    check_hf_destination(out, force)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_samples(gen, grid if gen.is_image else 2500, out / "samples.png", seed=0,
                      scale=2 if gen.is_image else 1)
        save_folder(gen, out, model_card(gen, name or out.resolve().name, metrics, source, "samples.png"))
    except BaseException:
        if created:  # every file in it is this export's: leave no half-written folder
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def check_hf_destination(out: Path, force: bool) -> None:
    """Refuse an hf export into a run directory (the folder would shadow the run for sample and eval), and
    over the files of an earlier export unless ``force``."""
    from gankit.checkpoint import CheckpointDir
    from gankit.generator_folder import FOLDER_FILES

    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; an hf export is a folder")
    if (out / "checkpoints").exists() or CheckpointDir(out).all():
        raise ExportError(f"--out {out} is a training run's directory (it holds checkpoints); an hf export there "
                          "would be taken for the run by gankit sample and eval: choose a folder of its own")
    existing = [out / f for f in FOLDER_FILES if (out / f).exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; an hf export would overwrite it (pass --force to replace the "
                          f"{', '.join(FOLDER_FILES)} of an earlier export)")


def model_card(gen: LoadedGenerator, name: str, metrics: dict[str, Any] | None, source: str,
               picture: str | None) -> str:
    """The README.md of an exported folder: Hub metadata, what the model is, how it scores, how to use it."""
    from gankit.version import __version__

    cfg = gen.config
    kind = f"class-conditional ({gen.num_classes} classes) " if gen.num_classes and not gen.self_conditioned else ""
    arch = cfg.model.generator["name"]
    output = (f"{'x'.join(map(str, gen.data_shape))} images, pixels in "
              f"{'[-1, 1]' if cfg.data.normalize == 'symmetric' else '[0, 1]'}" if gen.is_image else "2D points")
    lines = ["---", "library_name: gankit", "tags: [gan, gankit, image-generation]", "---", "",
             f"# {name}", "",
             f"A {kind}{arch} generator ({'an' if arch[0] in 'aeiou' else 'a'} generative adversarial network's "
             f"G) trained with gankit {__version__} on `{cfg.data.name}` for {gen.step:,} steps "
             f"({'EMA weights' if gen.is_ema else 'raw weights'}); it maps a latent vector of "
             f"{gen.latent_dim} standard normal numbers{' and a class' if kind else ''} to {output}.", ""]
    if source:
        lines += [f"Trained with `{source}`.", ""]
    if picture:
        lines += [f"![samples]({picture})", "", "Samples for seed 0.", ""]
    lines += ["## Metrics", ""]
    if metrics:
        info = metrics.get("info", {})
        rows = [(k, v) for k, v in metrics.items() if k != "info" and isinstance(v, (int, float))
                and not isinstance(v, bool)]
        lines += ["| metric | value |", "| --- | --- |"] + [f"| {k} | {v:.4g} |" for k, v in rows] + [""]
        if info:
            features = f", features `{info['extractor']}`" if info.get("extractor") else ""
            lines += [f"Measured with `gankit eval` on {info.get('num', '?')} samples against "
                      f"`{info.get('reference', '?')}` ({info.get('split', '?')} split){features}.", ""]
    else:
        lines += ["Not measured (export with `--metrics RESULT.json`, written by `gankit eval --json`).", ""]
    lines += ["## Use", "", "```python", "import gankit"]
    if name.startswith("zoo:"):
        folder = f"gankit.hub.zoo_path({name[4:]!r})"
        lines += [f"gen = gankit.load_generator({name!r})  # or: gankit sample {name} --num 64 --out grid.png"]
    else:
        folder = "folder"
        lines += [f"from huggingface_hub import snapshot_download\nfolder = snapshot_download({name!r})" if "/" in name
                  else f"folder = {name!r}",
                  "gen = gankit.load_generator(folder)  # or: gankit sample FOLDER --num 64 --out grid.png"]
    lines += ["images = gen.sample(16, seed=0)  # model range; gen.to_uint8(images) gives pixels", "",
              "from gankit.hub import GankitGenerator  # huggingface_hub's own loader: a plain nn.Module",
              f"net = GankitGenerator.from_pretrained({folder})  # net(z) or net(z, labels)", "```", "",
              "## Config", "", "The resolved gankit config of the training run:", "", "```yaml",
              yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def read_metrics(path: str | Path | None) -> dict[str, Any] | None:
    """A ``gankit eval --json`` result for the model card."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_bytes())
    except RecursionError:
        raise ExportError(f"--metrics {path}: not a gankit eval JSON (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"--metrics {path}: cannot read a gankit eval JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ExportError(f"--metrics {path}: expected the JSON object `gankit eval --json` writes")
    if not isinstance(data.get("info", {}), dict):
        raise ExportError(f"--metrics {path}: 'info' must be an object, as `gankit eval --json` writes it")
    for key, value in data.items():  # the card formats numbers as floats
        if isinstance(value, int) and abs(value) > sys.float_info.max:
            raise ExportError(f"--metrics {path}: {reprlib.repr(key)} is an integer too large for a metric value")
    return data


def push(gen: LoadedGenerator, repo_id: str, *, metrics: dict[str, Any] | None = None, private: bool = False,
         token: str | None = None, source: str = "") -> str:
    """Export ``gen`` as an hf folder and upload it to the Hub repository ``repo_id``; returns its URL."""
    import tempfile

    try:
        import huggingface_hub as hub
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        raise ExportError("push needs huggingface_hub: pip install 'gankit[export]'") from None
    try:  # before anything is written: the id names no folder of this machine, but a Hub repository
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"push: {reprlib.repr(repo_id)} is not a Hub repository id ({first})") from None
    token = token or hub.get_token()
    if not token:
        raise ExportError("push needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    check_exportable(gen)
    with tempfile.TemporaryDirectory(prefix="gankit-push-") as tmp:  # removed with what it holds, however it ends
        folder = export_hf(gen, Path(tmp) / "model", name=repo_id, metrics=metrics, source=source)
        try:
            api = hub.HfApi(token=token)
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="gankit push")
        except Exception as exc:  # offline, refused token, no such namespace: one line, not a traceback
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"cannot push to {repo_id}: {first}") from None
    return str(url)
