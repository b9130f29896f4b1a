"""A lesson's report: report.json (every figure), report.md (self-contained Markdown that opens with its
pictures) and its PNGs: the measured figures as bars with their spread over seeds, the training curves,
and a sample grid per run. Every number in report.md is a figure of report.json."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from gankit.checkpoint import atomic_write_bytes
from gankit.lessons.measures import MEASURES, fmt
from gankit.lessons.reading import RULE, reading, shown
from gankit.logs import read_metrics

DPI = 72  # small PNGs: the reports are kept in the repository
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def write_report(results: dict[str, Any], out: str | Path, playground: dict[str, dict] | None = None) -> Path:
    """Add the reading to ``results`` (from :func:`gankit.lessons.runner.run_lesson`), write report.json,
    the PNGs and report.md into ``out``; returns report.md's path."""
    out = Path(out)
    labels = {r["key"]: r["label"] for r in results["runs"]}
    ranked = [m for m in results["measures"] if m != "rollbacks"]
    diverged = {r["key"]: sum(s.get("stopped_by") == "diverged" for s in r["seeds"]) for r in results["runs"]}
    sentences, comparisons = reading(labels, results["figures"], ranked, results["labels"], diverged,
                                     results["budget"]["seeds"])
    results = {**results, "diverged": diverged, "reading": sentences, "comparisons": comparisons, "rule": RULE,
               "playground": sorted(playground or {})}
    atomic_write_bytes(out / "report.json", (json.dumps(results, indent=1) + "\n").encode())
    pictures = [("bars.png", "The measured figures: the bar is the mean over seeds, the line its standard "
                 "deviation, the dots the seeds", bars_png(results))]
    samples = samples_png(results, out)
    if samples is not None:
        pictures.append(("samples.png", "Samples of each run's first seed at the end of its budget", samples))
    curves = curves_png(results, out)
    if curves is not None:
        pictures.append(("curves.png", "Training curves of every seed (one colour per run)", curves))
    for name, _, png in pictures:
        atomic_write_bytes(out / name, png)
    text = markdown(results, [(name, caption) for name, caption, _ in pictures])
    atomic_write_bytes(out / "report.md", text.encode())
    return out / "report.md"


def markdown(results: dict[str, Any], pictures: list[tuple[str, str]]) -> str:
    """report.md: the question, the pictures, the reading, the figures, what was run."""
    budget, labels = results["budget"], results["labels"]
    lines = [f"# {results['title']}", "", f"*Tutorial {results['tutorial']}.*", "", f"**Question.** {results['question']}",
             ""]
    for name, caption in pictures:
        lines += [f"![{caption}]({name})", "", f"*{caption}.*", ""]
    lines += ["## Reading", "", f"Generated from the figures below ({results['rule']}).", ""]
    lines += [f"- {s}" for s in results["reading"]] + [""]
    lines += ["## Measured", "", f"Mean ± standard deviation over {budget['seeds']} seeds, then each seed's value; "
              f"every run trained for {fmt(budget['seconds_per_run'], True)} s of one CPU thread.", ""]
    keys = [r["key"] for r in results["runs"]]
    lines += ["| measure | " + " | ".join(r["label"] for r in results["runs"]) + " |",
              "|---|" + "---:|" * len(keys)]
    for m in results["measures"]:
        aggs = [results["figures"][k][m] for k in keys]
        if m == "rollbacks" and not any(a["mean"] for a in aggs):
            continue
        integer = MEASURES[m].integer
        cells = [f"{shown(a, integer)} ({', '.join(fmt(v, integer) for v in a['values'])})" for a in aggs]
        lines.append(f"| {labels[m]} | " + " | ".join(cells) + " |")
    lines += ["", "## What was run", "",
              "Each run is one `gankit train` command per seed; run one yourself to see it train (the lesson also "
              "turned the progress bar, TensorBoard and intermediate sample grids off, which changes no training).",
              ""]
    for run in results["runs"]:
        lines += [f"**{run['label']}**", "", "```bash"]
        lines += [s["command"] for s in run["seeds"]]
        lines += ["```", ""]
        for s in run["seeds"]:
            if s.get("error"):
                lines += [f"Seed {s['seed']} stopped: `{s['error']}`", ""]
    lines += [f"The lesson took {fmt(budget['wall_seconds'])} s of wall-clock time, training and measuring."]
    load = budget.get("load_average") or []
    if len(load) == 2 and None not in load and budget.get("cpus"):
        lines[-1] += (f" The machine's load average (busy cores, of {budget['cpus']}) was {fmt(load[0])} at its start "
                      f"and {fmt(load[1])} at its end: other jobs slow every run's steps, so compare steps too.")
    lines += [""]
    if results.get("playground"):
        lines += ["## Play it live", "", "The same game on the 2D ring in `gankit playground`, ready to press Play:",
                  "", "```bash"]
        lines += [f"gankit lesson {results['lesson']} --play {key}" for key in results["playground"]]
        lines += ["```", ""]
    return "\n".join(lines)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # a Figure of its own: pyplot's backend stays the caller's

    return Figure(figsize=(width, height), dpi=DPI)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return small_png(buf.getvalue())


def small_png(data: bytes) -> bytes:
    """A PNG re-encoded with a 256-colour palette: plots and digit grids look the same at a third of the bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(out, "PNG", optimize=True)
    return out.getvalue()


def bars_png(results: dict[str, Any]) -> bytes:
    """One panel per measure: a bar per run at its mean, its standard deviation and the seeds as dots."""
    shown_measures = [m for m in results["measures"] if m != "rollbacks"]
    runs = results["runs"]
    cols = min(3, len(shown_measures))
    rows = math.ceil(len(shown_measures) / cols)
    fig = _figure(3.6 * cols, 0.9 + 0.35 * len(runs) * rows + 0.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, m in zip(axes, shown_measures):
        for i, run in enumerate(runs):
            agg = results["figures"][run["key"]][m]
            color = COLORS[i % len(COLORS)]
            if agg["mean"] is not None:
                ax.barh(i, agg["mean"], xerr=agg["std"] or 0, color=color, alpha=0.55, capsize=3)
            values = [v for v in agg["values"] if v is not None]
            ax.scatter(values, [i] * len(values), s=10, color="black", zorder=3)
        ax.set_yticks(range(len(runs)), [r["label"] for r in runs], fontsize=7)
        ax.invert_yaxis()
        better = MEASURES[m].better
        ax.set_title(results["labels"][m] + (f" ({better} is better)" if better else ""), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[len(shown_measures):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _first_trained(run: dict[str, Any], out: Path) -> Path | None:
    for s in run["seeds"]:
        run_dir = out / "runs" / f"{run['key']}-s{s['seed']}"
        if s.get("stopped_by") != "diverged" and (run_dir / "checkpoints").is_dir():
            return run_dir
    return None


def samples_png(results: dict[str, Any], out: Path) -> bytes | None:
    """A panel per run: 64 digits (8 x 8) or 2,500 ring points over the real data, from its first seed."""
    from gankit.sampling import load_generator, points_reference

    panels = [(run["label"], _first_trained(run, out)) for run in results["runs"]]
    panels = [(label, d) for label, d in panels if d is not None]
    if not panels:
        return None
    fig = _figure(2.0 * len(panels), 2.35)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (label, run_dir) in zip(axes, panels):
        gen = load_generator(run_dir, device="cpu")
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if gen.is_image:
            images = gen.to_uint8(gen.sample(64, seed=0)).numpy()  # (64, C, H, W)
            c, h, w = images.shape[1:]
            grid = images.reshape(8, 8, c, h, w).transpose(0, 3, 1, 4, 2).reshape(8 * h, 8 * w, c)
            ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray", vmin=0, vmax=255)
        else:
            points = gen.sample(2500, seed=0).numpy()
            reference, modes = points_reference(gen.config.data, 2500)
            if reference is not None:
                ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.8")
            ax.scatter(points[:, 0], points[:, 1], s=1, c="tab:blue")
            if modes is not None:
                ax.scatter(modes[:, 0], modes[:, 1], s=20, c="tab:red", marker="x", linewidths=1)
            lim = 1.6 if reference is None else float(reference.abs().max()) * 1.3
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
    fig.tight_layout()
    return _png(fig)


def curves_png(results: dict[str, Any], out: Path, keys: tuple[str, ...] | None = None) -> bytes | None:
    """The logged curves (losses, and gradient norms when logged) of every seed, a colour per run."""
    from gankit.lessons.catalog import LESSONS

    lesson = LESSONS.get(results["lesson"])
    keys = keys or (lesson.curves if lesson is not None else ("loss_d", "loss_g"))
    logs = {(run["key"], s["seed"]): read_metrics(out / "runs" / f"{run['key']}-s{s['seed']}" / "metrics.jsonl")
            for run in results["runs"] for s in run["seeds"]}
    keys = tuple(k for k in keys if any(k in row for rows in logs.values() for row in rows))
    if not keys:
        return None
    fig = _figure(3.6 * len(keys), 2.8)
    axes = fig.subplots(1, len(keys), squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        for i, run in enumerate(results["runs"]):
            for j, s in enumerate(run["seeds"]):
                rows = [r for r in logs[(run["key"], s["seed"])] if key in r]
                ax.plot([r["step"] for r in rows], [r[key] for r in rows], color=COLORS[i % len(COLORS)],
                        linewidth=0.8, alpha=0.8, label=run["label"] if j == 0 else None)
        if key.startswith("grad_norm"):
            ax.set_yscale("log")
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)
