"""Experiment trackers beside metrics.jsonl: Weights & Biases (offline) and MLflow (a local file store), each
through its own library. TensorBoard, the default, is written by :class:`gankit.logs.RunLogger` itself.

Every tracker gets the rows of metrics.jsonl (same names, same steps), the resolved config, and the
sample grids. Nothing leaves the machine: W&B runs offline (``wandb sync`` uploads a run later) and
MLflow writes files under the run directory. The tracker runs' ids are kept in ``<run>/trackers.json``,
so a resumed gankit run continues the same W&B and MLflow runs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from gankit.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from gankit.config import LogConfig

IDS_FILE = "trackers.json"
PROJECT = "gankit"  # the W&B project and the MLflow experiment every run goes to
MLRUNS = "mlruns"
STEP = "step"  # W&B: the x-axis of every chart (see WandbTracker)


def hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to TensorBoard's hparam types (numbers, strings, bools); lists and None as text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix.count(".") < 1:  # sections, then model.generator as one value
            flat.update(hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def tensorboard_on(log: LogConfig) -> bool:
    """``log.tensorboard`` is the older switch: TensorBoard is written when it and ``log.trackers`` both say so."""
    return log.tensorboard and "tensorboard" in log.trackers


def library_trackers(log: LogConfig) -> list[str]:
    """The trackers of ``log.trackers`` that this module writes (all but TensorBoard)."""
    return [name for name in log.trackers if name != "tensorboard"]


def check_installed(log: LogConfig) -> None:
    """Refuse, before a run writes anything, a tracker whose library is missing (TensorBoard stays optional:
    its logs are skipped when it is not installed, as before ``log.trackers``)."""
    from gankit.config import ConfigError

    for name in library_trackers(log):
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"config: log.trackers lists {name}, which is not installed: "
                              f"pip install 'gankit[{name}]'")


class Tracker:
    """What :class:`gankit.logs.RunLogger` calls; ``describe`` says where the run went, in one line."""

    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def image(self, step: int, image: np.ndarray) -> None:
        """``image``: the sample grid as uint8 (H, W, C)."""

    def close(self) -> None: ...

    def describe(self) -> str:
        return ""


def open_trackers(names: Sequence[str], run_dir: Path, config: dict[str, Any]) -> list[Tracker]:
    """A tracker per name, each continuing the run ``<run>/trackers.json`` names, if any."""
    if not names:
        return []
    path = run_dir / IDS_FILE
    try:
        ids = json.loads(path.read_text())
        ids = ids if isinstance(ids, dict) else {}
    except (OSError, ValueError):
        ids = {}
    opened: list[Tracker] = []
    try:
        for name in names:
            tracker = {"wandb": WandbTracker, "mlflow": MlflowTracker}[name](run_dir, config, ids.get(name))
            opened.append(tracker)
            ids[name] = tracker.run_id
            atomic_write_bytes(path, json.dumps(ids, indent=2).encode())
    except BaseException:
        for tracker in opened:
            tracker.close()
        raise
    return opened


class WandbTracker(Tracker):
    """Weights & Biases, offline, under ``<run>/wandb``; ``wandb sync`` uploads it later."""

    def __init__(self, run_dir: Path, config: dict[str, Any], run_id: str | None) -> None:
        import wandb

        # offline for the whole process, not only this run: with init's mode alone, wandb still exports its
        # usage analytics to its server (a process-wide setting that init's does not reach)
        wandb.setup(settings=wandb.Settings(mode="offline"))
        settings = wandb.Settings(
            console="off",  # leave the process's stdout and stderr (the progress bar) alone
            silent=True,  # gankit says where the run is, in one line
            x_disable_stats=True, x_disable_meta=True,  # their probes of the environment reach for the network
        )
        self.run = wandb.init(project=PROJECT, name=run_dir.name, id=run_id, resume="allow" if run_id else None,
                              dir=str(run_dir), mode="offline", config=config, reinit="create_new", settings=settings)
        self.run_id = self.run.id
        self.run_dir = run_dir
        # every chart against gankit's step, a value like any other: wandb's own step must only grow, and a
        # resumed run logs again the steps after its checkpoint (a rollback goes back too)
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log({**values, STEP: step})

    def image(self, step: int, image: np.ndarray) -> None:
        import wandb

        self.run.log({"samples": wandb.Image(image), STEP: step})

    def close(self) -> None:
        self.run.finish()

    def describe(self) -> str:
        return (f"gankit: wandb: offline run {self.run_id} in {self.run_dir / 'wandb'}; upload with: "
                f"wandb sync {self.run_dir / 'wandb'}/offline-run-*")


def mlflow_client(run_dir: str | Path) -> MlflowClient:
    """An MLflow client of the local store under ``<run>/mlruns`` (what the mlflow tracker writes)."""
    # MLflow sends usage telemetry from a thread it starts on import, unless told not to; gankit's store
    # is local and nothing of it leaves the machine
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow 3 keeps its file store working only on this opt-in (a database is its new default; a file store
    # needs no server, no SQLAlchemy, and moves with the run directory)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(Path(run_dir) / MLRUNS).resolve().as_uri())


class MlflowTracker(Tracker):
    """MLflow, a file store under ``<run>/mlruns``: the config as params (and config.yaml), the scalars as
    metrics, the grids as images with their step."""

    def __init__(self, run_dir: Path, config: dict[str, Any], run_id: str | None) -> None:
        from mlflow.entities import Param, RunStatus
        from mlflow.exceptions import MlflowException
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        self.client = client = mlflow_client(run_dir)
        self.run_dir = run_dir
        if run_id is not None:
            try:
                client.get_run(run_id)
                client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            except MlflowException:  # mlruns/ removed or replaced: start a new MLflow run
                run_id = None
        if run_id is None:
            experiment = client.get_experiment_by_name(PROJECT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(PROJECT)
            run_id = client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        self.run_id = run_id
        # MLflow params cannot change: a resume that changed a resumable setting (train.steps, ...) keeps the
        # values the run started with there; config.yaml below is always this invocation's
        logged = client.get_run(run_id).data.params
        params = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in hparams(config).items() if k not in logged]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + MAX_PARAMS_TAGS_PER_BATCH])
        client.log_dict(run_id, config, "config.yaml")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, step: int, image: np.ndarray) -> None:
        self.client.log_image(self.run_id, image.squeeze(-1) if image.shape[-1] == 1 else image, key="samples",
                              step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)

    def describe(self) -> str:
        store = self.run_dir / MLRUNS
        return (f"gankit: mlflow: run {self.run_id} in {store} (experiment {PROJECT}); browse with: "
                f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {store}")
