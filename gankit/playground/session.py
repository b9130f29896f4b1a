"""One playground game: gankit's noise -> image game stepped by a background thread, driven by the page's commands.

The worker thread alone touches the Trainer. The server hands it commands through a queue (each with
a Future for its result), so a step, a settings change and a frame never overlap and need no locks.
The worker looks at the queue between D updates too: play / pause / slow / fast only set flags and
are answered there, so the page is never kept waiting by a long step; a stop abandons the step.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
import queue
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.checkpoint import CheckpointDir
from gankit.config import ConfigError, read_yaml
from gankit.objectives import build_objective
from gankit.playground.budget import BUDGET, NetCost, StepCost, measure, step_cost
from gankit.playground.frames import GRID_SAMPLES, Nets, View2D, finite_or_none, frame_2d, frame_image
from gankit.playground.settings import (COST_KEYS, DEFAULT_IMAGE_CONFIG, LIMITS, OBJECTIVES, PRESETS_2D,
                                        Settings, export_yaml, short, shown)
from gankit.sampling import latents
from gankit.games.noise_to_image import NoiseToImage as Trainer
from gankit.games.base import set_lr
from gankit.games.phases import single_phase, train_step
from gankit.run_state import RunState
from gankit.train import StatWindow, prepare, save_checkpoint

ACTIONS = ("play", "pause", "step", "step_d", "step_g", "reset", "slow", "fast")
FLAG_ACTIONS = ("play", "pause", "slow", "fast")  # answered between D updates, even while a step runs
MAX_STEPS_PER_CALL = 10_000
SLOW_SECONDS = 0.25  # slow motion: one step, one frame, then this pause
# The 2D view's mode counts (2,500 samples through G: half a frame's work) are refreshed at most this often
# while playing, and on every frame a command asks for; the page redraws everything else at full rate.
MODES_SECONDS = 0.2
# The grid samples the EMA as training does, BatchNorm statistics re-estimated (EMA.recalibrate_norms), on
# the render thread: for the first frame after a game's first step, then at most this often (1.8 s of one
# core for mnist_dcgan); frames between use the last estimate with the current weights, which an EMA
# moves little (at step 0 the EMA is G, untrained: its own statistics are drawn).
EMA_STATS_SECONDS = 10.0
FID_EVERY = 500  # image mode: G steps between in-training FIDs
FID_NUM = 1000


class PlaygroundError(ValueError):
    """A command the game refuses; the message is shown on the page."""


class Stopping(PlaygroundError):
    """The server is shutting down: the step in progress is abandoned, waiting commands get this."""


@dataclasses.dataclass(frozen=True)
class _Preset:
    stamp: tuple[int, int]  # (mtime_ns, size) of the file this was read from
    image: bool
    note: str  # why the file is not offered, when it is broken


class ImageConfigs:
    """The preset YAML files of a folder that train on images (the 2D ones have their own mode). Each file
    is read with gankit's guarded YAML reader once per change, not on every request; a broken one is
    skipped with a note for the page."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._known: dict[str, _Preset] = {}
        self._lock = threading.Lock()  # the server's thread and the worker both ask

    def scan(self) -> tuple[list[str], list[str]]:
        """(the image presets' file names, a note per broken file)."""
        if self.folder is None or not self.folder.is_dir():
            return [], []
        with self._lock:
            known = {}
            for path in sorted(self.folder.glob("*.yaml")):
                try:
                    st = path.stat()
                except OSError:
                    continue
                stamp = (st.st_mtime_ns, st.st_size)
                preset = self._known.get(path.name)
                known[path.name] = preset if preset is not None and preset.stamp == stamp else _read_preset(path, stamp)
            self._known = known
        return ([name for name, p in known.items() if p.image],
                [f"{name} skipped: {p.note}" for name, p in known.items() if p.note])


def _read_preset(path: Path, stamp: tuple[int, int]) -> _Preset:
    try:
        data = read_yaml(path).get("data", {})
    except ConfigError as exc:
        return _Preset(stamp, False, short(" ".join(str(exc).split())))
    if not isinstance(data, dict):
        return _Preset(stamp, False, "its data is not a section")
    return _Preset(stamp, data.get("name", "mnist10k") not in (*PRESETS_2D, "grid"), "")


def image_configs(configs_dir: Path | None) -> list[str]:
    """The image presets of ``configs_dir`` (file names)."""
    return ImageConfigs(configs_dir).scan()[0]


class Session:
    def __init__(self, configs_dir: Path | None = None, fps: float = 15.0, image_fps: float = 2.0) -> None:
        self.configs_dir = configs_dir
        self.configs = ImageConfigs(configs_dir)
        self.fps, self.image_fps = fps, image_fps
        self.settings = Settings.for_2d()
        self.config_name: str | None = None
        self.trainer: Trainer | None = None
        self.run = RunState()  # the game's step and learning-rate scale (the page has no schedules)
        self.view: View2D | None = None
        self.image_z: torch.Tensor | None = None
        self.evaluator: Any = None
        self.fid: float | None = None
        self.fid_note = ""
        self.playing = self.slow = False
        self.clean, self.note = True, ""
        self.message = ""
        self.frame: bytes | None = None
        self.frame_id = 0  # counted by the render thread
        self._listeners: list[Callable[[], None]] = []  # told of every new frame (the websockets)
        self.nets: Nets | None = None
        # frames are drawn on the second core from copies of the nets while training goes on
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="gankit-playground-render",
                                               initializer=torch.set_num_threads, initargs=(1,))
        self._render: Future | None = None
        self.window = StatWindow()
        self._rate = (0, time.perf_counter())  # (step, time) at the last frame
        self._modes_at = -math.inf  # when the last frame measured the mode metrics
        self._stats_at = -math.inf  # when the render copy of the EMA last had its BatchNorm statistics re-estimated
        self.steps_per_second = 0.0
        # (command, its Future, whether it only sets a flag)
        self._commands: queue.Queue[tuple[Callable[[], Any], Future, bool]] = queue.Queue()
        self._held: collections.deque[tuple[Callable[[], Any], Future, bool]] = collections.deque()
        self._in_step = False  # a flag command runs between two D updates: no frame of a half step
        self._pauses = 0  # counted, so a run of steps stops at the pause that came during it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gankit-playground", daemon=True)
        self.net_cost: NetCost | None = None
        self.allowance = BUDGET
        self._new_game(self.settings, self.settings.check({}))
        self._allow_base()

    # -- called from other threads
    def start(self) -> "Session":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the worker to stop (from any thread, a signal handler included): the step in progress is
        abandoned at its next D update and every waiting command is answered with :class:`Stopping`."""
        self._stop.set()

    def close(self) -> None:
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._fail_waiting()
        self._render_pool.shutdown(wait=True)

    def call(self, name: str, *args: Any) -> Future:
        """Run the command ``name`` in the worker thread between two steps (play / pause / slow / fast:
        between two D updates); the Future holds its result."""
        future: Future = Future()
        fn = getattr(self, f"_cmd_{name}")
        if self._stop.is_set():
            future.set_exception(Stopping("the playground is stopping"))
        elif not self._thread.is_alive():  # not started (tests): run here
            self._execute(lambda: fn(*args), future)
        else:
            flag = name == "control" and bool(args) and args[0] in FLAG_ACTIONS
            self._commands.put((lambda: fn(*args), future, flag))
            if self._stop.is_set():  # stopped while queueing: the worker may not look again
                self._fail_waiting()
        return future

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the render thread; it must not block) after every new frame."""
        self._listeners = [*self._listeners, listener]

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        self._listeners = [f for f in self._listeners if f is not listener]

    def state(self) -> dict[str, Any]:
        t = self.trainer
        configs, notes = self.configs.scan()
        return {"mode": self.settings.mode, "source": self.settings.source, "config": self.config_name,
                "values": self.settings.values(), "playing": self.playing, "slow": self.slow,
                "step": self.run.step if t else 0, "clean": self.clean, "note": self.note, "message": self.message,
                "presets": list(PRESETS_2D), "objectives": list(OBJECTIVES),
                "configs": configs, "config_notes": notes, "default_config": DEFAULT_IMAGE_CONFIG,
                "limits": LIMITS,
                "fid": self.fid, "fid_note": self.fid_note}

    # -- the worker
    def _run(self) -> None:
        if self.trainer is not None and self.trainer.cfg.train.threads:  # torch's thread count is per thread
            torch.set_num_threads(self.trainer.cfg.train.threads)
        try:
            while not self._stop.is_set():
                self._drain(block=not self.playing)
                if not self.playing or self.trainer is None:
                    continue
                try:
                    if self.slow:
                        self._step("both")
                        self._publish(sync=True)
                        self._drain(block=True, timeout=SLOW_SECONDS)
                        continue
                    due = time.perf_counter() + 1.0 / (self.fps if self.settings.mode == "2d" else self.image_fps)
                    while time.perf_counter() < due and self._idle() and self.playing:
                        self._step("both")
                    self._publish()
                except Stopping:
                    raise
                except Exception as exc:  # a failing step pauses the game; the server lives on
                    self.playing = False
                    self.message = f"training stopped at step {self.run.step}: {exc}"
                    self._publish(sync=True)
        except Stopping:
            pass
        finally:
            self._fail_waiting()

    def _idle(self) -> bool:
        return not self._held and self._commands.empty()

    def _next(self, timeout: float | None = None) -> tuple[Callable[[], Any], Future, bool] | None:
        """The next command (waiting up to ``timeout`` seconds; None: do not wait), or None."""
        if self._held:
            return self._held.popleft()
        try:
            return self._commands.get(timeout=timeout) if timeout is not None else self._commands.get_nowait()
        except queue.Empty:
            return None

    def _drain(self, block: bool, timeout: float = 0.05) -> None:
        item = self._next(timeout if block else None)
        while item is not None:
            self._execute(item[0], item[1])
            item = self._next()

    def _between(self) -> None:
        """Between two D updates: stop when asked; answer flag commands (play, pause, ...) that come before
        any other command (those wait for the step to end, in order)."""
        if self._stop.is_set():
            raise Stopping("the playground is stopping")
        while (item := self._next()) is not None:
            if not item[2]:
                self._held.appendleft(item)
                return
            self._in_step = True
            try:
                self._execute(item[0], item[1])
            finally:
                self._in_step = False

    def _fail_waiting(self) -> None:
        while (item := self._next()) is not None:
            if not item[1].done():
                item[1].set_exception(Stopping("the playground is stopping"))

    def _execute(self, fn: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(fn())
        except Stopping as exc:  # the command's caller hears it; the worker stops
            future.set_exception(exc)
            raise
        except Exception as exc:
            future.set_exception(exc)

    def _step(self, which: str) -> None:
        t = self.trainer
        assert t is not None
        if which == "both":
            self.window.add(train_step(t, self.run, between=self._between))
        else:
            self.window.add(single_phase(t, self.run, which.upper()))
            self._dirty(f"a single {which.upper()} step at step {self.run.step}")
        self._maybe_evaluate()

    def _maybe_evaluate(self) -> None:
        t = self.trainer
        step = self.run.step
        if self.evaluator is None or t is None or step == 0 or step % FID_EVERY:
            return
        try:
            self.fid = finite_or_none(self.evaluator.evaluate(step).get("fid"))
            self.fid_note = f"FID of {FID_NUM} samples at step {step}"
        except Exception as exc:  # a metric that cannot run here: say so once, keep training
            self.evaluator, self.fid_note = None, f"FID unavailable: {exc}"

    def _dirty(self, note: str) -> None:
        if self.clean:
            self.clean, self.note = False, note

    def _publish(self, sync: bool = False) -> None:
        """Hand a frame of the current game to the render thread; while it still draws the last one,
        skip (``sync``: wait for it, and for the new frame: after a command the page sees its effect)."""
        t = self.trainer
        if t is None or self.nets is None:
            return
        if self._render is not None and not self._render.done():
            if not sync:
                return
            self._render.exception()
        if not self.window.finite():
            self.playing = False
            self.message = (f"training diverged (a non-finite loss) by step {self.run.step}; reset, or lower the "
                            "learning rates")
            self.window = StatWindow()
        step0, t0 = self._rate
        now = time.perf_counter()
        if self.run.step > step0 and now > t0:
            self.steps_per_second = (self.run.step - step0) / (now - t0)
        self._rate = (self.run.step, now)
        stats = {k: finite_or_none(v) for k, v in self.window.means().items()}
        self.window = StatWindow()
        header = {"step": self.run.step, "steps_per_second": round(self.steps_per_second, 1), "stats": stats,
                  "playing": self.playing, "slow": self.slow, "clean": self.clean, "message": self.message,
                  "fid": self.fid, "fid_note": self.fid_note}
        self.nets.update(t)
        calibration = None
        if self.nets.ema_norm_buffers and self.run.step > 0 and now - self._stats_at >= EMA_STATS_SECONDS:
            self._stats_at = now
            z, y = t.recalibration_batches()
            calibration = ([b.cpu() for b in z], None if y is None else [b.cpu() for b in y])
        if self.settings.mode == "2d":
            assert self.view is not None
            modes = sync or now - self._modes_at >= MODES_SECONDS
            if modes:
                self._modes_at = now
            job = functools.partial(frame_2d, self.nets, t.objective, self.view, header, modes)
        else:
            assert self.image_z is not None
            labels = t.labels(len(self.image_z), per_row=int(len(self.image_z) ** 0.5))
            job = functools.partial(frame_image, self.nets, self.image_z, None if labels is None else labels.cpu(),
                                    t.cfg.data.normalize, header)
        self._render = self._render_pool.submit(self._draw, job, calibration)
        if sync:
            self._render.exception()

    def _draw(self, job: Callable[[], bytes], calibration: Any = None) -> None:
        try:
            if calibration is not None and self.nets is not None:
                self.nets.recalibrate(calibration)
            self.frame = job()
        except Exception as exc:  # a frame that cannot be drawn must not stop the game
            self.message = f"cannot draw the view: {exc}"
            return
        self.frame_id += 1
        for listener in self._listeners:
            listener()

    def _new_game(self, settings: Settings, cfg: Any, changes: dict[str, Any] | None = None) -> None:
        """Build a Trainer for ``cfg`` with gankit's own ``prepare``; the old game stays if that fails, or
        if ``changes`` (the page's, named in the message) make a step cost more than it may."""
        trainer = prepare(cfg)
        if settings.mode == "2d" and trainer.source.is_image:
            raise ConfigError(f"config: data.name: {cfg.data.name} holds images; use the image mode")
        if settings.mode == "image" and not trainer.source.is_image:
            raise ConfigError(f"config: data.name: {cfg.data.name} holds 2D points; use the 2D mode")
        net_cost = measure(trainer)
        if changes is not None:
            self._check_cost(net_cost, cfg, changes)
        if self._render is not None:
            self._render.exception()  # the render thread lets go of the old nets
        self.settings, self.trainer, self.nets = settings, trainer, Nets.of(trainer)
        self.run = RunState()
        self.net_cost = net_cost
        self.view = View2D.build(trainer) if settings.mode == "2d" else None
        self.image_z = None if settings.mode == "2d" else latents(GRID_SAMPLES, cfg.model.latent_dim,
                                                                    cfg.train.seed + 10_007)
        self.evaluator, self.fid, self.fid_note = None, None, ""
        if settings.mode == "image":
            self._build_evaluator(trainer)
        self.clean, self.note, self.message = True, "", ""
        self.window = StatWindow()
        self._rate = (0, time.perf_counter())
        self._stats_at = -math.inf
        self._publish(sync=True)

    def _build_evaluator(self, trainer: Trainer) -> None:
        from gankit.evaluator import TrainingEvaluator
        from gankit.metrics.features import default_extractor

        cfg = trainer.cfg
        eval_cfg = dataclasses.replace(cfg.eval, metrics=["fid"], num=FID_NUM)
        try:
            if default_extractor(cfg.eval.reference or cfg.data.name) == "inception" and not cfg.eval.extractor:
                raise ConfigError("this dataset is measured with Inception features, which are not bundled")
            self.evaluator = TrainingEvaluator.build(dataclasses.replace(cfg, eval=eval_cfg), trainer)
            self.fid_note = f"FID every {FID_EVERY} steps"
        except Exception as exc:
            self.fid_note = f"FID unavailable: {exc}"

    def _allow_base(self) -> None:
        """A preset at its own values may cost more than the page's budget; the page may not add to it."""
        assert self.net_cost is not None and self.trainer is not None
        base = step_cost(self.net_cost, self.trainer.cfg, self.settings.mode == "image")
        self.allowance = StepCost(*(max(a, b) for a, b in zip(dataclasses.astuple(BUDGET), dataclasses.astuple(base))))

    def _check_cost(self, nets: NetCost, cfg: Any, changes: dict[str, Any]) -> None:
        cost = step_cost(nets, cfg, self.settings.mode == "image")
        over = cost.over(self.allowance)
        if over:
            named = [k for k in changes if k in COST_KEYS] or list(changes)
            values = ", ".join(f"{k}={shown(changes[k], 40)}" for k in named)
            step_over = cost.flops > self.allowance.flops or cost.bytes > self.allowance.bytes
            lower = "train.batch_size, train.d_steps or the widths and depths" if step_over else "the widths or depths"
            raise ConfigError(f"settings: {values}: {over}, more than the playground allows (it would stall "
                              f"the page and this machine); lower {lower}")

    # -- commands (run in the worker)
    def _cmd_change(self, changes: dict[str, Any]) -> dict[str, Any]:
        cfg = self.settings.check(changes)
        if not changes:
            return self.state()
        candidate = dataclasses.replace(self.settings, changes=dict(self.settings.changes))
        restart = candidate.apply(changes)
        t = self.trainer
        if restart or t is None:
            self._new_game(candidate, cfg, changes)
        else:
            assert self.net_cost is not None
            self._check_cost(self.net_cost, cfg, changes)
            objective = build_objective(cfg.objective)  # may refuse the name: before anything changes
            self.settings = candidate
            t.cfg, t.objective = cfg, objective
            t.phases = t.build_phases()  # train.d_steps may have changed
            set_lr(t, self.run.lr_scale)
            for opt, betas in ((t.optimizers["g"], cfg.optim.betas_g), (t.optimizers["d"], cfg.optim.betas_d)):
                for group in opt.param_groups:
                    if "betas" in group:
                        group["betas"] = (float(betas[0]), float(betas[1]))
            if self.run.step > 0:
                self._dirty(f"{', '.join(changes)} changed at step {self.run.step}")
            self.message = ""
            self._publish(sync=True)
        return self.state()

    def _cmd_control(self, action: str, count: int = 1) -> dict[str, Any]:
        if action not in ACTIONS:
            raise PlaygroundError(f"unknown action {shown(action)} (one of: {', '.join(ACTIONS)})")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_STEPS_PER_CALL:
            raise PlaygroundError(f"count must be an integer from 1 to {MAX_STEPS_PER_CALL}, got {shown(count)}")
        if action == "play":
            self.playing, self.message = True, ""
            self._rate = (self.run.step if self.trainer else 0, time.perf_counter())
        elif action == "pause":
            self.playing = False
            self._pauses += 1
        elif action in ("slow", "fast"):
            self.slow = action == "slow"
        elif action == "reset":
            self.playing = False
            self._new_game(self.settings, self.settings.check({}))
            return self.state()
        else:
            which = {"step": "both", "step_d": "d", "step_g": "g"}[action]
            self.playing = False
            pauses = self._pauses
            for _ in range(count):
                self._between()  # a pause answered here ends the run of steps
                if self._pauses != pauses:
                    break
                self._step(which)
        if not self._in_step:  # between two D updates: the frame comes when the step is complete
            self._publish(sync=True)
        return self.state()

    def _cmd_mode(self, mode: str, config: str | None = None) -> dict[str, Any]:
        if mode == "2d":
            settings = Settings.for_2d()
            self.config_name = None
        elif mode == "image":
            names = self.configs.scan()[0]
            config = config or DEFAULT_IMAGE_CONFIG
            if config not in names:
                where = f"in {self.configs_dir}" if names else "(no configs directory: pass --configs DIR)"
                raise PlaygroundError(f"config {shown(config)} is not one of the image presets {where}: "
                                      f"{', '.join(names)}")
            assert self.configs_dir is not None
            settings = Settings.for_image(self.configs_dir / config)
        else:
            raise PlaygroundError(f"mode must be 2d or image, got {shown(mode)}")
        self.playing = False
        self._new_game(settings, settings.check({}))
        self._allow_base()
        self.config_name = config if mode == "image" else None
        return self.state()

    def _cmd_export(self) -> str:
        assert self.trainer is not None
        return export_yaml(self.trainer.cfg, self.run.step, self.settings.source, self.clean, self.note)

    def _cmd_checkpoint(self) -> bytes:
        t = self.trainer
        assert t is not None
        with tempfile.TemporaryDirectory(prefix="gankit-playground-") as tmp:
            # training's own save: the EMA's BatchNorm statistics re-estimated, non-finite weights refused
            path = save_checkpoint(t, self.run, CheckpointDir(tmp, keep=1), 0.0)
            return path.read_bytes()

    def _cmd_frame(self) -> bytes | None:
        return self.frame


def wait(future: Future, timeout: float = 120.0) -> Any:
    """A command's result in a caller that may block (tests, the benchmark)."""
    return future.result(timeout=timeout)


__all__ = ["ACTIONS", "ImageConfigs", "PlaygroundError", "Session", "Stopping", "image_configs", "wait"]
