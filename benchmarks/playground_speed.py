"""Speed of `gankit playground`'s 2D mode as the page sees it: the real server (`gankit playground`, its own
process, as a user starts it), a websocket client taking every frame in this process (the browser's
stand-in), training played through the API. Prints a table and writes JSON.

    python benchmarks/playground_speed.py --seconds 10 --rounds 3 --json benchmarks/results/playground_speed.json

Rows: G steps/s while playing (the default 2D net: 3 x 64 ReLU MLPs, batch 128, R1 every 16 D steps)
with frames streaming; frames/s received (1,000 samples, their gradient arrows and a 64 x 64 heat map
per frame); the time to draw one frame; its size; and, for scale, G steps/s of a bare Trainer loop of
the same game (no server, no frames) in this process while the server is paused. The machine is a
shared VM whose speed drifts by tens of percent within a minute, so play and bare loop alternate in
``--rounds`` rounds and the medians are reported, with their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gankit.playground.frames import Nets, View2D, frame_2d, unpack  # noqa: E402
from gankit.playground.settings import Settings  # noqa: E402
from benchmarks.engine_step import run_of  # noqa: E402
from gankit.games.phases import train_step  # noqa: E402
from gankit.train import prepare  # noqa: E402


class Server:
    """`gankit playground --port 0` in a child process; its port and token read from the line it prints."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gankit", "playground", "--port", "0", "--configs",
                                      str(ROOT / "configs")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
            if found:
                self.port, self.token = int(found[1]), found[2]
                break
        else:
            raise SystemExit(f"gankit playground did not start (exit code {self.proc.wait()})")
        deadline = time.monotonic() + 60  # the URL is printed before the server listens
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/state?token={self.token}", timeout=5)
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("gankit playground did not answer") from None
                time.sleep(0.1)
        raise SystemExit(f"gankit playground did not start (exit code {self.proc.wait()})")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def control(p: Server, action: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{p.port}/api/control", data=json.dumps({"action": action}).encode(),
                                 headers={"Content-Type": "application/json", "X-Gankit-Token": p.token})
    urllib.request.urlopen(req, timeout=60).read()


def played(p: Server, seconds: float) -> dict[str, float]:
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


def frame_ms(trainer: object, repeats: int = 30) -> float:
    nets, view = Nets.of(trainer), View2D.build(trainer)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame_2d(nets, trainer.objective, view, {})
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def bare_steps(trainer: object, seconds: float) -> float:
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        train_step(trainer, run_of(trainer, None))
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of play per round (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of play + bare loop (default 3)")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the playground's worker runs (train.threads 1)
    trainer = prepare(Settings.for_2d().check({}))
    bare_steps(trainer, 1.0)  # warm-up
    server = Server()
    rounds = []
    try:
        for _ in range(args.rounds):
            live = played(server, args.seconds)
            rounds.append({**live, "bare_g_steps_per_second": bare_steps(trainer, args.seconds / 2)})
    finally:
        server.stop()
    draw = frame_ms(trainer)
    med = {k: statistics.median(r[k] for r in rounds) for k in
           ("g_steps_per_second", "frames_per_second", "frame_bytes", "bare_g_steps_per_second")}
    load = os.getloadavg()[0]
    result = {**med, "playing_over_bare": med["g_steps_per_second"] / med["bare_g_steps_per_second"],
              "rounds": rounds, "frame_ms": draw, "seconds_per_round": args.seconds, "samples": 1000,
              "heat_map": "64x64", "load_average_1min": load, "cpus": os.cpu_count(),
              "torch": torch.__version__, "python": platform.python_version()}
    rows = [("G steps/s while playing, frames streaming", f"{med['g_steps_per_second']:.0f}", ">= 200"),
            ("frames/s received by the websocket client", f"{med['frames_per_second']:.1f}", ">= 10"),
            ("draw one frame (render thread), ms", f"{draw:.1f}", ""),
            ("frame size, bytes", f"{med['frame_bytes']:.0f}", ""),
            ("G steps/s, bare Trainer loop (no server)", f"{med['bare_g_steps_per_second']:.0f}", ""),
            ("playing / bare", f"{result['playing_over_bare']:.2f}", "")]
    print(f"playground speed, 2D mode, default net, medians of {args.rounds} rounds of {args.seconds:g} s "
          f"({os.cpu_count()} CPUs, load average {load:.1f} at the end)")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>8}  {target}")
    print("per round, playing / bare G steps/s: " + ", ".join(
        f"{r['g_steps_per_second']:.0f} / {r['bare_g_steps_per_second']:.0f}" for r in rounds))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
