"""Speed of `gankit playground`'s 2D mode as the page sees it: a real server, a websocket client taking
every frame, training played through the API. Prints a table and writes JSON.

    nice -n 19 python benchmarks/playground_speed.py --seconds 20 --json benchmarks/results/playground_speed.json

Rows: G steps/s while playing (the default 2D net: 3 x 64 ReLU MLPs, batch 128, R1 every 16 D steps)
with frames streaming; frames/s received (1,000 samples, their gradient arrows and a 64 x 64 heat map
per frame); the time to draw one frame; its size; and, for scale, G steps/s of a bare Trainer loop
with no server and no frames.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import torch
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gankit.playground.frames import Nets, frame_2d, unpack  # noqa: E402
from gankit.playground.server import Playground  # noqa: E402


def control(p: Playground, action: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{p.port}/api/control", data=json.dumps({"action": action}).encode(),
                                 headers={"Content-Type": "application/json", "X-Gankit-Token": p.token})
    urllib.request.urlopen(req, timeout=60).read()


def played(p: Playground, seconds: float) -> dict[str, float]:
    """Play for ``seconds`` with a websocket client reading every frame."""
    origin = f"http://127.0.0.1:{p.port}"
    with connect(f"ws://127.0.0.1:{p.port}/ws?token={p.token}", origin=origin, max_size=None) as ws:
        ws.recv(timeout=30)  # the frame of the paused game
        control(p, "play")
        ws.recv(timeout=30)
        first, t0 = None, None
        frames, sizes = 0, []
        while t0 is None or time.perf_counter() - t0 < seconds:
            message = ws.recv(timeout=30)
            header, _ = unpack(message)
            if first is None:
                first, t0 = header["step"], time.perf_counter()
                continue
            frames += 1
            sizes.append(len(message))
            last, t1 = header["step"], time.perf_counter()
        control(p, "pause")
    return {"g_steps_per_second": (last - first) / (t1 - t0), "frames_per_second": frames / (t1 - t0),
            "frame_bytes": statistics.median(sizes), "steps": last}


def frame_ms(p: Playground, repeats: int = 30) -> float:
    s = p.session
    nets = Nets.of(s.trainer)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame_2d(nets, s.trainer.objective, s.view, {})
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def bare_steps(p: Playground, seconds: float) -> float:
    t = p.session.trainer
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        t.train_step(None)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of play measured (default 20)")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args()
    p = Playground(port=0, configs_dir=ROOT / "configs").start_in_thread()
    try:
        live = played(p, args.seconds)
        control(p, "reset")
        torch.set_num_threads(1)  # as the playground's worker runs (train.threads 1)
        draw = frame_ms(p)
        bare = bare_steps(p, min(10.0, args.seconds))
    finally:
        p.stop()
    load = os.getloadavg()[0]
    result = {**live, "frame_ms": draw, "bare_g_steps_per_second": bare, "seconds": args.seconds,
              "samples": 1000, "heat_map": "64x64", "load_average_1min": load, "cpus": os.cpu_count(),
              "torch": torch.__version__, "python": platform.python_version()}
    rows = [("G steps/s while playing, frames streaming", f"{live['g_steps_per_second']:.0f}", ">= 200"),
            ("frames/s received by the websocket client", f"{live['frames_per_second']:.1f}", ">= 10"),
            ("draw one frame (render thread), ms", f"{draw:.1f}", ""),
            ("frame size, bytes", f"{live['frame_bytes']:.0f}", ""),
            ("G steps/s, bare Trainer loop (no server)", f"{bare:.0f}", "")]
    print(f"playground speed, 2D mode, default net, {args.seconds:g} s of play "
          f"({os.cpu_count()} CPUs, load average {load:.1f} at the end)")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>8}  {target}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
