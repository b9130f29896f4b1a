"""benchmarks/gpu_check.py, dry-run on the CPU: every section runs and the JSON says what it found."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_dry_run_covers_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu", "--quick",
                           "--threads", "1", "--json", str(out), "--sections", "perf", "resume", "fid"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert set(sections) == {"perf", "resume", "fid"}
    rows = sections["perf"]["rows"]
    assert {(r["preset"], r["variant"]) for r in rows} == {
        (p, v) for p in ("mnist_dcgan", "mnist_cyclegan") for v in ("fp32", "amp", "amp+cl")}
    for row in rows:
        assert "error" not in row, row
        assert row["finite"] and row["steps_per_s"] > 0 and row["gflop_per_step"] > 0 and 0 < row["of_fp32_peak"]
    assert {r["perf"]["amp"] for r in rows} == {"fp32", "bf16"} or {r["perf"]["amp"] for r in rows} == {"fp32"}
    assert sections["resume"]["bit_exact"] is True and sections["resume"]["cut_at"] == 2
    assert sections["fid"]["steps"] == 2 and sections["fid"]["fid"] > 0


def test_a_section_that_fails_is_recorded_and_the_others_still_run(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cuda:9", "--quick",
                           "--json", str(out), "--sections", "resume", "nproc"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads(out.read_text())["sections"]
    assert "error" in sections["resume"] or "skipped" in sections["resume"]
    assert "skipped" in sections["nproc"] or "error" in sections["nproc"] or sections["nproc"]["rc"] != 0
