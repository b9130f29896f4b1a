"""What the user sees during training: progress bar, metrics.jsonl, TensorBoard, loss curves."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gankit.checkpoint import atomic_write_bytes
from gankit.trackers import hparams, open_trackers

PIPED_INTERVAL = 30.0  # seconds between progress lines when stderr is a file or a pipe, not a terminal


class RunLogger:
    """Writes scalars to metrics.jsonl (and TensorBoard when installed, and the trackers of
    :mod:`gankit.trackers`) and drives the progress bar."""

    def __init__(self, run_dir: Path, *, start_step: int, total_steps: int | None, progress: bool,
                 tensorboard: bool, batch_size: int, deadline: float | None = None,
                 config: dict[str, Any] | None = None, trackers: Sequence[str] = ()) -> None:
        """``config``: the resolved config, shown in TensorBoard as text and, at the end, as hparams beside
        the final metrics, and given to the ``trackers`` (wandb, mlflow) as theirs."""
        self.run_dir = run_dir
        self.config = config
        self.batch_size = batch_size
        # --max-seconds: the bar's total (and so its ETA) is the step the budget will reach at the
        # current rate, when that comes before train.steps
        self.deadline, self.total = deadline, total_steps
        self._bar_start = self._bar_check = time.perf_counter()
        self.trackers = open_trackers(trackers, run_dir, config or {})  # first: nothing to close if one fails
        _drop_rows_after(run_dir / "metrics.jsonl", start_step)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.tb = _tensorboard_writer(run_dir / "tensorboard") if tensorboard else None
        if self.tb is not None and config is not None:
            import yaml

            self.tb.add_text("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```", start_step)
        self.bar, self.live = None, False
        if progress:
            from tqdm.auto import tqdm

            # piped into a log file, every redraw would be a line of its own: a plain line every
            # PIPED_INTERVAL seconds there, a live bar on a terminal
            self.live = sys.stderr.isatty()
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=self.live,
                            file=sys.stderr, smoothing=0.05, ascii=not self.live, ncols=None if self.live else 100,
                            mininterval=0.1 if self.live else PIPED_INTERVAL,
                            maxinterval=10.0 if self.live else PIPED_INTERVAL)
        self._last_step, self._last_time = start_step, time.perf_counter()
        self._last_eval: dict[str, float] = {}
        self._final: dict[str, float] = {}  # the last value of every scalar, for the hparams table

    def scalars(self, step: int, stats: dict[str, Any], extra: dict[str, float] | None = None) -> dict[str, float]:
        """Record one row; returns it. Tensors are read here, once per log interval."""
        now = time.perf_counter()
        rate = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        row = {k: float(v.item() if isinstance(v, torch.Tensor) else v) for k, v in stats.items()}
        row.update(extra or {})
        row["img_per_s"] = rate
        self.record(step, row)
        if self.bar is not None:
            self.bar.set_postfix_str(_postfix({**self._last_eval, **row}), refresh=False)
        return row

    def record(self, step: int, values: dict[str, float]) -> None:
        """Write scalars to metrics.jsonl and TensorBoard (evaluation results use this directly)."""
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(_tb_tag(key), value, step)
        for tracker in self.trackers:
            tracker.scalars(step, values)
        if "eval/fid" in values:
            self._last_eval = {"fid": values["eval/fid"]}
        self._final.update(values)

    def event(self, record: dict[str, Any]) -> None:
        """Append a non-scalar event (an alarm) to events.jsonl."""
        with open(self.run_dir / "events.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def rewind(self, step: int) -> None:
        """After a rollback: the progress bar and rate count from ``step`` again."""
        if self.bar is not None:
            self.bar.n = step
            if self.live:
                self.bar.refresh()
        self._last_step, self._last_time = step, time.perf_counter()

    def advance(self, steps: int = 1) -> None:
        if self.bar is None:
            return
        self.bar.update(steps)
        now = time.perf_counter()
        if self.deadline is not None and now - self._bar_check > 1.0:
            self._bar_check = now
            elapsed = now - self._bar_start
            done = self.bar.n - self.bar.initial
            if done > 0 and elapsed > 0:
                reach = self.bar.n + int(done / elapsed * max(self.deadline - now, 0.0))
                self.bar.total = reach if self.total is None else min(self.total, reach)
                if self.live:
                    self.bar.refresh()

    def image(self, step: int, grid_uint8_chw: torch.Tensor | None, path: Path | None = None) -> None:
        """A sample grid: TensorBoard gets ``grid_uint8_chw``, the trackers the PNG at ``path`` when given
        (upscaled as ``gankit sample`` writes it; a scatter plot for 2D points), else the grid."""
        if self.tb is not None and grid_uint8_chw is not None:
            self.tb.add_image("samples", grid_uint8_chw, step)
        if self.trackers and (path is not None or grid_uint8_chw is not None):
            from PIL import Image

            if path is not None:
                with Image.open(path) as im:
                    array = np.asarray(im.convert("RGB" if im.mode not in ("L", "RGB") else im.mode))
            else:
                array = grid_uint8_chw.permute(1, 2, 0).numpy()
            array = array[..., None] if array.ndim == 2 else array
            for tracker in self.trackers:
                tracker.image(step, array)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for tracker in self.trackers:
            tracker.close()
        if self.tb is not None:
            if self.config is not None and self._final:
                final = {f"final/{k}": v for k, v in self._final.items()
                         if k in FINAL_METRICS or k.startswith("eval/")}
                self.tb.add_hparams(hparams(self.config), final, run_name=".")
            self.tb.close()
        self.jsonl.close()


class NullLogger(RunLogger):
    """The logger of the processes other than rank 0 of a multi-process run: rows are computed (the
    loop returns the last one), nothing is written or printed."""

    def __init__(self, *, start_step: int, batch_size: int) -> None:
        self.batch_size, self.bar, self.tb, self.trackers = batch_size, None, None, []
        self._last_step, self._last_time = start_step, time.perf_counter()
        self._last_eval = {}

    def record(self, step: int, values: dict[str, float]) -> None:
        pass

    def event(self, record: dict[str, Any]) -> None:
        pass

    def image(self, step: int, grid_uint8_chw: torch.Tensor) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


FINAL_METRICS = ("loss_d", "loss_g", "d_real", "d_fake", "img_per_s")


def _tensorboard_writer(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: `pip install gankit[tensorboard]`
        return None
    return SummaryWriter(str(path))


def _tb_tag(key: str) -> str:
    if key.startswith("loss"):
        return f"loss/{key}"
    if key.startswith("d_"):
        return f"D/{key}"
    if "/" in key:
        return key
    return f"train/{key}"


def _postfix(row: dict[str, float]) -> str:
    parts = [f"{k}={row[k]:.3f}" for k in ("loss_d", "loss_g", "d_real", "d_fake") if k in row]
    if "fid" in row:
        parts.append(f"FID={row['fid']:.1f}")
    parts.append(f"{row['img_per_s']:.0f} img/s")
    return " ".join(parts)


def _drop_rows_after(path: Path, step: int) -> None:
    """A resumed run repeats the steps after its checkpoint: the rows a killed run logged for them would
    appear twice (and send the loss plot back in time), so they go before the new ones are written."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut short by a crash
    if len(kept) != len(lines):
        atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def read_metrics(path: Path) -> list[dict[str, float]]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
    return rows


def plot_loss_curves(metrics_path: Path, out: Path, title: str | None = None,
                     labels: tuple[str, str | None] = ("D(x)", "D(G(z))")) -> Path | None:
    """Loss and D-output curves from metrics.jsonl as a PNG, titled with the run's name (its folder, unless
    ``title``); None when there is nothing to plot. ``labels``: see :func:`loss_curves_figure`."""
    rows = [r for r in read_metrics(metrics_path) if "loss_d" in r]
    if not rows:
        return None
    import io

    fig = loss_curves_figure(rows, labels, title or metrics_path.resolve().parent.name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(out, buf.getvalue())
    return out


def loss_curves_figure(rows: list[dict[str, Any]], labels: tuple[str, str | None], title: str) -> Any:
    """The losses and D's outputs of metrics rows. ``labels``: the objective's names of d_real and d_fake
    (:attr:`gankit.objectives.Objective.output_labels`; d_fake None when it is 1 - d_real: not drawn)."""
    style = {"marker": "o"} if len(rows) < 20 else {}  # a short run's few rows stay visible
    # a Figure of its own, not pyplot: switching pyplot's backend here would leave a notebook that
    # trained a run unable to show its own plots afterwards
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(10, 3.5), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    for key in ("loss_d", "loss_g"):
        ax1.plot(steps, [r.get(key, math.nan) for r in rows], label=key, **style)
    ax1.set_xlabel("step (generator updates)")
    ax1.set_ylabel("loss (mean over the log interval)")
    ax1.set_title("losses")
    ax1.legend()
    outputs = []
    for key, label in zip(("d_real", "d_fake"), labels):
        if label is None:
            continue
        outputs += [r.get(key, math.nan) for r in rows]
        ax2.plot(steps, outputs[-len(rows):], label=label, **style)
    probabilities = all(0 <= v <= 1 for v in outputs if not math.isnan(v))
    if probabilities:
        ax2.set_ylim(0, 1)  # probabilities; critics' (wgan, hinge, lsgan) raw outputs keep their own scale
        if labels[1] is None:  # a paired probability: 0.5 is D unable to tell the two apart
            ax2.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax2.set_xlabel("step (generator updates)")
    ax2.set_ylabel(("D's probability of real" if labels[0] == "D(x)" else "D's relative probability")
                   if probabilities else "D's raw output (critic score)")
    ax2.set_title("discriminator outputs")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
