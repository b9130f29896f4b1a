"""Training throughput: gankit's real train step against a plain hand-written PyTorch loop of the same models.

    python benchmarks/throughput.py                       # every preset, CPU, ~3 min on 2 cores
    python benchmarks/throughput.py --presets seed000 mnist_dcgan --steps 50 --rounds 5 --json out.json
    python benchmarks/throughput.py --device cuda --threads 16

For each preset, ``gankit.train.prepare(cfg)`` builds the Trainer that ``gankit train`` runs, and the
benchmark calls ``gankit.games.phases.train_step(game, run)`` in a loop: exactly the per-step code of the CLI (the CLI
adds only logging every ``log.every`` steps, sampling and checkpoints, which are not measured here).

The plain loop is the textbook PyTorch DCGAN-tutorial loop over the SAME networks (built with
``gankit.models.build_models`` and loaded with the Trainer's initial weights): a DataLoader over a
TensorDataset of the same normalised float images (shuffle=True, drop_last=True), nn.BCEWithLogitsLoss
against label tensors, and

    netD.zero_grad(); errD_real.backward(); errD_fake.backward(); optD.step()
    netG.zero_grad(); errG.backward(); optG.step()        # G's step reuses the D step's fake

with Adam built from the same config. For ``objective.name: minimax`` the plain G loss is the
same saturating ``-BCE(D(G(z)), 0)``; with ``train.d_steps`` k > 1 it runs k D steps like gankit. The
plain loop reads no loss values back (no ``.item()``), so it is the lean baseline.

Both loops run in one process with the same batch size, device and thread count. After a warm-up,
timed rounds of N steps alternate between them (the order flips every round), and the table reports
the median images/s of each and the ratio gankit/plain; on a shared machine only the ratio is
meaningful. ``--steps`` unset picks N per preset so one round lasts about ``--round-seconds``.

seed001 (CIFAR-10) uses ``data.root`` from the preset; without the CIFAR-10 files there it runs on
random uint8 images of CIFAR shape (50,000 x 3 x 32 x 32), marked in the table: speed does not depend
on pixel values.

``--profile`` also prints the top operators of Trainer.train_step and of the plain step
(torch.profiler, self CPU time). The gankit/plain table runs gankit in float32 (``perf.amp: fp32``, no
channels-last, no compile), the plain loop's arithmetic.

Two more tables (``--tables``; the default is ``loop`` on a CPU and ``loop perf`` on CUDA):

``perf``: gankit's step in float32, with mixed precision (``perf.amp: auto``: bf16 where the GPU has it,
else fp16; channels-last on for conv models) and with mixed precision plus ``torch.compile``: median
images/s, the peak GPU memory (``torch.cuda.max_memory_allocated``) and the warm-up time, which holds
the compilation. The variants run one after the other (each alone in memory).

``nproc``: images/s of the same global batch trained by 1, 2, ... processes (``--nproc 1 2``): CPU
processes over gloo sharing the cores (each takes ``threads / N``), or one GPU each on CUDA.

    python benchmarks/throughput.py --device cuda --json gpu.json          # loop + perf tables
    python benchmarks/throughput.py --tables nproc --presets seed004 --nproc 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from gankit.config import ConfigError, load
from gankit.data import build_dataset
from gankit.data.registry import DATASETS
from gankit.data.source import DataError, TensorSource, to_model_range
from gankit.models import build_models
from gankit.games.noise_to_image import NoiseToImage as Trainer
from gankit.games.phases import train_step
from gankit.run_state import RunState
from gankit.train import prepare

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {
    "seed000": "configs/seeds/seed000_mlp_mnist.yaml",
    "seed001": "configs/seeds/seed001_vanilla_cifar10.yaml",
    "seed002": "configs/seeds/seed002_hybrid_mnist.yaml",
    "seed003": "configs/seeds/seed003_dcgan64.yaml",
    "seed004": "configs/seeds/seed004_dcgan_mnist.yaml",
    "mnist_dcgan": "configs/mnist_dcgan.yaml",
}
RANDOM_CIFAR = "random-cifar10-shape"


def _random_cifar(cfg) -> TensorSource:
    """Random uint8 images of CIFAR-10's shape, for timing when the real files are absent."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (50_000,), generator=gen)
    return TensorSource(images, labels, cfg.normalize, 10)


if RANDOM_CIFAR not in DATASETS:
    DATASETS.register(RANDOM_CIFAR)(_random_cifar)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


FP32 = ["perf.amp=fp32", "perf.channels_last=false", "perf.compile=false"]
PERF_VARIANTS = {"fp32": FP32, "amp": ["perf.amp=auto", "perf.channels_last=null", "perf.compile=false"],
                 "amp+compile": ["perf.amp=auto", "perf.channels_last=null", "perf.compile=true"]}


def load_preset(name: str, device: str, threads: int | None, no_ema: bool = False,
                extra: list[str] | None = None) -> tuple[object, str]:
    """The preset's config for benchmarking; falls back to random CIFAR-shaped data for seed001."""
    path = ROOT / PRESETS[name] if name in PRESETS else Path(name)
    overrides = [f"train.device={device}", "log.progress=false", "log.tensorboard=false", *(extra or [])]
    if no_ema:
        overrides.append("train.ema_decay=0.0")
    if threads:
        overrides.append(f"train.threads={threads}")
    cfg = load(path, overrides)
    note = ""
    if cfg.data.name == "cifar10":
        try:
            build_dataset(cfg.data)
        except (DataError, ConfigError) as exc:
            cfg.data.name = RANDOM_CIFAR
            note = f"random uint8 CIFAR-shaped data (no CIFAR-10 in {cfg.data.root!r}: {str(exc)[:60]}...)"
    return cfg, note


class PlainLoop:
    """The PyTorch DCGAN tutorial's training loop over copies of the Trainer's networks."""

    def __init__(self, trainer: Trainer) -> None:
        cfg, device = trainer.cfg, trainer.device
        self.device, self.k = device, cfg.train.d_steps
        self.bs, self.nz = cfg.train.batch_size, cfg.model.latent_dim
        self.minimax = cfg.objective.name == "minimax"
        if cfg.objective.name not in ("ns", "minimax") or cfg.objective.label_smoothing or \
                cfg.objective.instance_noise:
            raise SystemExit(f"the plain loop implements only the ns/minimax objectives without label "
                             f"smoothing or instance noise (got {cfg.objective})")
        self.netG, self.netD = build_models(cfg.model, trainer.source.shape)
        self.netG.load_state_dict(trainer.g.state_dict())  # identical starting weights
        self.netD.load_state_dict(trainer.d.state_dict())
        self.netG.to(device)
        self.netD.to(device)
        o = cfg.optim
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=o.lr_g, betas=tuple(o.betas_g), eps=o.eps,
                                     weight_decay=o.weight_decay)
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=o.lr_d, betas=tuple(o.betas_d), eps=o.eps,
                                     weight_decay=o.weight_decay)
        self.criterion = nn.BCEWithLogitsLoss()
        source = trainer.source
        if not isinstance(source, TensorSource):
            raise SystemExit("the plain loop needs an in-memory dataset")
        data = source.data.cpu()
        images = to_model_range(data, source.normalize) if source.is_image else data.float()
        self.loader = DataLoader(TensorDataset(images.to(device)), batch_size=self.bs, shuffle=True,
                                 drop_last=True)
        self.it = iter(self.loader)
        self.label = torch.empty(self.bs, device=device)

    def next_real(self) -> torch.Tensor:
        try:
            (real,) = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            (real,) = next(self.it)
        return real

    def step(self) -> None:
        netG, netD, crit, label = self.netG, self.netD, self.criterion, self.label
        for _ in range(self.k):
            # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real = self.next_real()
            output = netD(real).view(-1)
            errD_real = crit(output, label.fill_(1.0))
            errD_real.backward()
            noise = torch.randn(self.bs, self.nz, device=self.device)
            fake = netG(noise)
            output = netD(fake.detach()).view(-1)
            errD_fake = crit(output, label.fill_(0.0))
            errD_fake.backward()
            self.optD.step()
        # (2) Update G: maximize log(D(G(z))) (minimax: minimize log(1 - D(G(z))))
        netG.zero_grad()
        output = netD(fake).view(-1)
        errG = -crit(output, label.fill_(0.0)) if self.minimax else crit(output, label.fill_(1.0))
        errG.backward()
        self.optG.step()


def timed(fn, steps: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return time.perf_counter() - t0


def profile(fn, steps: int, title: str, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    print(f"\n--- profile: {title} ({steps} steps) ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def bench_preset(name: str, args: argparse.Namespace) -> dict:
    cfg, note = load_preset(name, args.device, args.threads, args.no_ema, FP32)
    trainer = prepare(cfg)
    total = cfg.train.steps
    plain = PlainLoop(trainer)
    device = trainer.device
    images_per_step = cfg.train.batch_size * cfg.train.d_steps
    run = RunState(total=total, noise_horizon=total)
    gk = lambda: train_step(trainer, run)  # noqa: E731
    pl = plain.step
    # warm-up (allocator, kernels, Adam state), then one timed step of each sets the automatic step count
    timed(gk, args.warmup, device)
    timed(pl, args.warmup, device)
    probe = (timed(gk, 1, device) + timed(pl, 1, device)) / 2
    steps = args.steps or int(min(max(args.round_seconds / max(probe, 1e-6), 1), 1000))
    rates: dict[str, list[float]] = {"gankit": [], "plain": []}
    for r in range(args.rounds):
        order = [("gankit", gk), ("plain", pl)] if r % 2 == 0 else [("plain", pl), ("gankit", gk)]
        for key, fn in order:
            rates[key].append(steps * images_per_step / timed(fn, steps, device))
    if args.profile:
        profile(gk, args.profile, f"{name} gankit train_step", args.profile_rows)
        profile(pl, args.profile, f"{name} plain loop", args.profile_rows)
    g_med, p_med = statistics.median(rates["gankit"]), statistics.median(rates["plain"])
    return {"preset": name, "config": PRESETS.get(name, name), "batch_size": cfg.train.batch_size,
            "d_steps": cfg.train.d_steps, "data": cfg.data.name, "shape": list(trainer.source.shape),
            "steps_per_round": steps, "rounds": args.rounds,
            "gankit_img_s": rates["gankit"], "plain_img_s": rates["plain"],
            "gankit_median": g_med, "plain_median": p_med, "ratio": g_med / p_med, "note": note}


def steps_for(args: argparse.Namespace, probe: float) -> int:
    return args.steps or int(min(max(args.round_seconds / max(probe, 1e-6), 1), 1000))


def bench_perf(name: str, args: argparse.Namespace) -> dict:
    """gankit's step in float32, with mixed precision, and with mixed precision + torch.compile."""
    rows: dict[str, dict] = {}
    for variant, overrides in PERF_VARIANTS.items():
        cfg, note = load_preset(name, args.device, args.threads, args.no_ema, overrides)
        trainer = prepare(cfg)
        device = trainer.device
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        run = RunState(total=cfg.train.steps, noise_horizon=cfg.train.steps)
        step = lambda: train_step(trainer, run)  # noqa: E731
        warmup = timed(step, max(args.warmup, 3), device)  # compiles (D step, G step) when compile is on
        steps = steps_for(args, timed(step, 1, device))
        images = steps * cfg.train.batch_size * cfg.train.d_steps
        rates = [images / timed(step, steps, device) for _ in range(args.rounds)]
        rows[variant] = {"img_s": rates, "median": statistics.median(rates), "steps_per_round": steps,
                         "warmup_s": warmup, "resolved": trainer.perf.describe(),
                         "peak_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else None}
        del trainer, step
    return {"preset": name, "batch_size": cfg.train.batch_size, "note": note, "variants": rows}


def _nproc_worker(rank: int, world: int, init: str, cfg_dict: dict, threads: int, args: argparse.Namespace,
                  results: object) -> None:
    """One of ``world`` processes training the same global batch; rank 0 reports images/s per round."""
    import torch.distributed as dist

    from gankit.config import from_dict

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: loopback
    cfg = from_dict(cfg_dict)
    if cfg.train.device.startswith("cuda"):
        os.environ["LOCAL_RANK"] = str(rank)
        torch.cuda.set_device(rank)
    torch.set_num_threads(threads)
    backend = "cpu:gloo,cuda:nccl" if cfg.train.device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        trainer = prepare(cfg)
        device = trainer.device
        run = RunState(total=cfg.train.steps, noise_horizon=cfg.train.steps)
        step = lambda: train_step(trainer, run)  # noqa: E731
        timed(step, args.warmup, device)
        probe = [timed(step, 1, device)]
        dist.broadcast_object_list(probe, src=0)  # every process runs the same number of steps
        steps = steps_for(args, probe[0])
        rates = []
        for _ in range(args.rounds):
            dist.barrier()
            rates.append(steps * cfg.train.batch_size * cfg.train.d_steps / timed(step, steps, device))
        if rank == 0:
            results.put({"nproc": world, "threads_each": threads, "steps_per_round": steps, "img_s": rates,
                         "median": statistics.median(rates)})
    finally:
        dist.destroy_process_group()


def bench_nproc(name: str, args: argparse.Namespace) -> dict:
    """The same global batch trained by 1, 2, ... processes (spawned, gloo on CPU, one GPU each on CUDA)."""
    import tempfile

    import torch.multiprocessing as mp

    cfg, note = load_preset(name, args.device, None, args.no_ema, FP32)
    total_threads = args.threads or torch.get_num_threads()
    rows = []
    ctx = mp.get_context("spawn")
    for n in args.nproc:
        if cfg.train.batch_size % n:
            raise SystemExit(f"{name}: batch {cfg.train.batch_size} does not split between {n} processes")
        results = ctx.SimpleQueue()
        with tempfile.TemporaryDirectory() as tmp:
            mp.start_processes(_nproc_worker, args=(n, f"{tmp}/init", cfg.to_dict(), max(1, total_threads // n),
                                                    args, results), nprocs=n, start_method="spawn")
        rows.append(results.get())
    return {"preset": name, "batch_size": cfg.train.batch_size, "note": note, "rows": rows}


def print_perf(results: list[dict]) -> None:
    print(f"\n{'preset':<12} {'batch':>5} " + " ".join(f"{v + ' img/s':>17} {'peak MiB':>9}" for v in PERF_VARIANTS)
          + f" {'amp':>5} {'compile':>8} {'warm-up s':>10}")
    for res in results:
        v = res["variants"]
        cols = " ".join(f"{v[k]['median']:>17.1f} {_mib(v[k]['peak_mib']):>9}" for k in PERF_VARIANTS)
        last = v["amp+compile"]
        print(f"{res['preset']:<12} {res['batch_size']:>5} {cols} {last['resolved']['amp']:>5} "
              f"{last['resolved']['compile']:>8} {last['warmup_s']:>10.1f}")


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_nproc(results: list[dict]) -> None:
    print(f"\n{'preset':<12} {'batch':>5} {'processes':>9} {'threads each':>12} {'img/s':>10} {'speed-up':>9}")
    for res in results:
        base = res["rows"][0]["median"]
        for row in res["rows"]:
            print(f"{res['preset']:<12} {res['batch_size']:>5} {row['nproc']:>9} {row['threads_each']:>12} "
                  f"{row['median']:>10.1f} {row['median'] / base:>9.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS),
                        help=f"preset names ({', '.join(PRESETS)}) or config paths")
    parser.add_argument("--steps", type=int, default=None,
                        help="train steps per timed round (default: about --round-seconds per round)")
    parser.add_argument("--round-seconds", type=float, default=2.5,
                        help="target length of one timed round when --steps is not given")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per loop (alternating)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each loop first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both loops (default: PyTorch's default)")
    parser.add_argument("--no-ema", action="store_true",
                        help="drop train.ema_decay from the presets (mnist_dcgan keeps an EMA of G, whose "
                             "update is part of gankit's step but not of the plain loop)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile STEPS steps of each loop and print the top operators")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--tables", nargs="+", choices=("loop", "perf", "nproc"), default=None,
                        help="loop: gankit vs the plain loop; perf: fp32 vs mixed precision vs compile; nproc: "
                             "1 vs N processes (default: loop on CPU, loop perf on CUDA)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts of the nproc table")
    args = parser.parse_args(argv)
    tables = args.tables or (["loop", "perf"] if args.device.startswith("cuda") else ["loop"])
    for name in args.presets:
        if name not in PRESETS and not Path(name).is_file():
            parser.error(f"unknown preset {name!r} (choose from {', '.join(PRESETS)} or give a config path)")
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    results, perf, nproc = [], [], []
    header = f"{'preset':<12} {'batch':>5} {'steps':>5} {'gankit img/s':>13} {'plain img/s':>12} {'gankit/plain':>12}"
    gpu = f" ({torch.cuda.get_device_name(torch.device(args.device))})" if args.device.startswith("cuda") else ""
    print(f"device {args.device}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds, median images/s", flush=True)
    if "loop" in tables:
        print(header, flush=True)
    for name in args.presets if "loop" in tables else []:
        res = bench_preset(name, args)
        results.append(res)
        mark = " *" if res["note"] else ""
        print(f"{name:<12} {res['batch_size']:>5} {res['steps_per_round']:>5} {res['gankit_median']:>13.1f} "
              f"{res['plain_median']:>12.1f} {res['ratio']:>12.3f}{mark}", flush=True)
    if "perf" in tables:
        perf = [bench_perf(name, args) for name in args.presets]
        print_perf(perf)
    if "nproc" in tables:
        nproc = [bench_nproc(name, args) for name in args.presets]
        print_nproc(nproc)
    for preset, note in {r["preset"]: r["note"] for r in results + perf + nproc if r["note"]}.items():
        print(f"* {preset}: {note}")
    elapsed = time.perf_counter() - t0
    print(f"total {elapsed:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": args.device, "threads": torch.get_num_threads(), "rounds": args.rounds,
                "torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "seconds": round(elapsed, 1),
                "argv": sys.argv[1:] if argv is None else argv}
        report = {"meta": meta, "results": results, "perf": perf, "nproc": nproc}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
