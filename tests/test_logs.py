"""gankit.logs: metrics.jsonl rows, crash-tolerant reading, loss curves."""
from __future__ import annotations

import json

import torch

from gankit.logs import RunLogger, plot_loss_curves, read_metrics


def test_logger_writes_one_json_row_per_call(tmp_path):
    logger = RunLogger(tmp_path, start_step=0, total_steps=10, progress=False, tensorboard=False, batch_size=4)
    row = logger.scalars(5, {"loss_d": torch.tensor(1.5), "loss_g": 0.5}, {"kimg": 0.02})
    logger.scalars(10, {"loss_d": torch.tensor(1.0), "loss_g": torch.tensor(0.25)})
    logger.close()
    assert row["loss_d"] == 1.5 and row["kimg"] == 0.02 and row["img_per_s"] > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    assert rows[1]["loss_g"] == 0.25
    assert all(isinstance(v, (int, float)) for r in rows for v in r.values())


def test_read_metrics_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss_d": 1.0}\n{"step": 2, "loss_d": 0.9}\n{"step": 3, "los')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_loss_curves_need_one_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("")
    assert plot_loss_curves(path, tmp_path / "curves.png") is None
    path.write_text('{"step": 1, "loss_d": 1.0, "loss_g": 0.7, "d_real": 0.6, "d_fake": 0.4}\n')
    assert plot_loss_curves(path, tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # a short run
    with path.open("a") as fh:
        fh.write('{"step": 2, "loss_d": 0.9, "loss_g": 0.8, "d_real": 0.55, "d_fake": 0.45}\n')
    out = plot_loss_curves(path, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_relativistic_objectives_outputs_are_named_for_what_they_are():
    """rpgan's d_real and d_fake always sum to 1: one line, named, not 'D(x)' and 'D(G(z))'."""
    from gankit.objectives import OBJECTIVES
    from gankit.logs import loss_curves_figure

    rows = [{"step": s, "loss_d": 0.5, "loss_g": 1.0, "d_real": 0.6, "d_fake": 0.4} for s in range(3)]
    legend = lambda fig: [t.get_text() for t in fig.axes[1].get_legend().get_texts()]  # noqa: E731
    paired = loss_curves_figure(rows, OBJECTIVES.get("rpgan").output_labels, "run")
    assert legend(paired) == ["P(a real looks more real than its paired fake)"]
    assert paired.axes[1].get_ylabel() == "D's relative probability"
    assert legend(loss_curves_figure(rows, OBJECTIVES.get("ns").output_labels, "run")) == ["D(x)", "D(G(z))"]
    assert legend(loss_curves_figure(rows, OBJECTIVES.get("rals").output_labels, "run")) == [
        "P(real > the average fake)", "P(fake > the average real)"]
