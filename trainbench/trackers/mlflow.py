"""MLflow: one MLflow run per trainbench run.

- Tracking store: ``MLFLOW_TRACKING_URI`` (``trainbench run --mlflow-uri`` sets it: an MLflow
  server, a database), else a SQLite database next to the runs, ``sqlite:///OUT/mlflow.db``;
  a SQLite store's artifacts go in ``mlflow-artifacts/`` beside the database (``mlflow ui --backend-store-uri
  sqlite:///OUT/mlflow.db`` shows them).
- Experiment: ``MLFLOW_EXPERIMENT_NAME`` (``--mlflow-experiment``), else the ``--out``
  folder's name; created when missing.
- Run name ``<name>/seed<S>``; params: the resolved recipe flattened (``optimizer.lr``, ...;
  lists as JSON); metrics: every points.csv column at its step; tags: ``trainbench.status``,
  the device, precision, smoke/synthetic flags, the versions and the run directory;
  artifacts at the end: points.csv, curve.png, recipe.yaml, meta.json.
- Status: running -> RUNNING, completed -> FINISHED, failed and diverged -> FAILED,
  interrupted -> KILLED. The MLflow run's id is kept in meta.json (``mlflow.run_id``), so
  ``--resume`` continues the same MLflow run (back to RUNNING); the points re-measured after
  the checkpoint are logged again at their steps.

mlflow takes seconds to import: only this module imports it, only when the tracker is used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from trainbench.results import flatten
from trainbench.trackers.base import RunInfo, Tracker, scalars

STATUS = {"running": "RUNNING", "completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED",
          "interrupted": "KILLED"}
ARTIFACTS = ("points.csv", "curve.png", "recipe.yaml", "meta.json")
RUN_DIR_TAG = "trainbench.run_dir"
ARTIFACT_DIR = "mlflow-artifacts"  # compare's discovery skips it (copies of meta.json)
PARAMS_PER_CALL = 100  # MLflow's log_batch limit


def tracking_uri(out: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out / 'mlflow.db'}"


def experiment_name(out: Path) -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or out.name or "trainbench"


def shown_uri(uri: str) -> str:
    """The URI without a password, for meta.json and messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def params(recipe: dict[str, Any]) -> dict[str, str]:
    """The resolved recipe as MLflow params: dotted keys (characters MLflow refuses replaced
    by '_'), values as text (lists and mappings as JSON), ``log`` left out (not identity)."""
    out = {}
    for k, v in flatten(recipe).items():
        if k == "log":  # the trackers themselves: not a setting of the training
            continue
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        out[re.sub(r"[^\w./\- :]", "_", k)] = text[:6000]
    return out


def quiet() -> None:
    """mlflow and alembic log INFO lines (database migrations) on every new store."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client_for(out: Path) -> tuple[Any, str]:
    from mlflow import MlflowClient

    quiet()  # after the import: mlflow sets its loggers up as it loads

    uri = tracking_uri(out)
    return MlflowClient(uri), uri


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite database (MLflow's own
    default would be ./mlruns in whatever folder trainbench runs from); a server decides."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACT_DIR).resolve().as_uri()
    return None


def experiment_id(client: Any, out: Path, uri: str) -> str:
    """The experiment's id, created (or restored from MLflow's trash) when needed. Two runs
    creating it at once (parallel executors) both end up with the one that won."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(out)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = artifact_location(uri)
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.info: RunInfo | None = None

    def start(self, info: RunInfo) -> None:
        self.info = info
        self.client, uri = client_for(info.out)
        exp = experiment_id(self.client, info.out, uri)
        meta = info.run.read_meta()
        previous = (meta.get("mlflow") or {}).get("run_id") if info.resumed else None
        if previous and self._exists(previous):
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            self.client.set_tag(previous, "trainbench.resumed", str(len(meta.get("resumed", []))))
        else:
            tags = {RUN_DIR_TAG: str(info.run.path.resolve()), "trainbench.name": info.name,
                    "trainbench.seed": str(info.seed), "trainbench.status": "running",
                    "trainbench.smoke": str(bool(meta.get("smoke"))).lower(),
                    **{f"trainbench.version.{k}": str(v) for k, v in (meta.get("versions") or {}).items()}}
            start = None
            with contextlib.suppress(ValueError, TypeError):  # the run's own start time
                import datetime as dt

                start = int(dt.datetime.fromisoformat(meta.get("start_time")).timestamp() * 1000)
            run = self.client.create_run(exp, start_time=start, run_name=info.label, tags=tags)
            self.run_id = run.info.run_id
            self._log_params(params(info.recipe))
        if not info.backfill:
            info.run.update_meta(mlflow={"run_id": self.run_id, "experiment_id": exp,
                                         "tracking_uri": shown_uri(uri)})

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def _log_params(self, values: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in values.items()]
        for i in range(0, len(items), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[i:i + PARAMS_PER_CALL])

    def point(self, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(row["step"])
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars(row).items()])

    def end(self, status: str) -> None:
        assert self.info is not None
        run = self.info.run
        meta = run.read_meta()
        precision = meta.get("precision") or {}
        tags = {"trainbench.status": status, "trainbench.device": str(meta.get("device", "")),
                "trainbench.device_type": str(meta.get("device_type", "")),
                "trainbench.precision": str(precision.get("used", "") if isinstance(precision, dict)
                                            else precision),
                "trainbench.synthetic_data": str(bool(meta.get("synthetic_data"))).lower()}
        if meta.get("message"):
            tags["trainbench.message"] = str(meta["message"])[:5000]
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)
        for name in ARTIFACTS:
            if (run.path / name).exists():
                self.client.log_artifact(self.run_id, str(run.path / name))
        end = int(time.time() * 1000)
        with contextlib.suppress(ValueError, TypeError):  # the run's own end time when recorded
            import datetime as dt

            end = int(dt.datetime.fromisoformat(meta.get("end_time")).timestamp() * 1000)
        self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"), end_time=end)

    def discard(self) -> None:
        if self.run_id is not None:  # the attempt is gone: so is its MLflow run
            self.client.delete_run(self.run_id)
