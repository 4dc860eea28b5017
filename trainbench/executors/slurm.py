"""The Slurm executor: each planned run is a Slurm job submitted through submitit
(``AutoExecutor`` + ``update_parameters``), its pickled task and logs in ``OUT/.submitit/``.
The driver polls ``job.done()``/``job.state`` and reads ``job.result()``; a job that died
(killed, node failure, pre-empted) is resubmitted up to ``--max-retries`` times and resumes
from its run's checkpoint.

``TRAINBENCH_SLURM_CLUSTER=local`` runs the jobs with submitit's LocalExecutor (subprocesses
of this machine): for tests and for trying a command where there is no Slurm.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from trainbench.errors import InputError
from trainbench.executors import DEFAULT_SLURM_MINUTES, ExecOptions
from trainbench.executors.remote import WorkerLost
from trainbench.executors.worker import RunTask, probe, run_task

CLUSTER_ENV = "TRAINBENCH_SLURM_CLUSTER"


class SlurmBackend:
    name = "Slurm"
    retries_itself = False  # the driver resubmits a dead job (same attempt id: it resumes)

    def __init__(self, opts: ExecOptions, out: Path) -> None:
        cluster = os.environ.get(CLUSTER_ENV) or "slurm"
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise InputError("--executor slurm: there is no Slurm here (no 'sbatch' command on the PATH). "
                             "Run on a Slurm login node, or use --executor ray or local.")
        self.executor = submitit.AutoExecutor(folder=out.resolve() / ".submitit" / "%j", cluster=cluster)
        self.executor.update_parameters(
            name="trainbench", timeout_min=opts.slurm_time or DEFAULT_SLURM_MINUTES,
            cpus_per_task=opts.cpus_per_run or 1, gpus_per_node=opts.slurm_gpus_per_run or 0,
            slurm_partition=opts.slurm_partition,
            slurm_additional_parameters=dict(opts.slurm_extra) or None)

    def probe(self, path: str, token: str) -> str:
        job = self.executor.submit(probe, path, token)
        return job.result()

    def submit(self, task: RunTask) -> Any:
        return self.executor.submit(run_task, task)

    def job_id(self, handle: Any) -> str:
        return str(handle.job_id)

    def finished(self, handles: list[Any], timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            done = [h for h in handles if h.done()]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(0.1, timeout))

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return handle.result()
        except UncompletedJobError as e:  # killed, node failure, pre-empted, cancelled
            raise WorkerLost(f"job {handle.job_id} ended without a result (state {handle.state}): "
                             f"{str(e).strip().splitlines()[0]}") from None
        except FailedJobError as e:  # an error escaped run_task: a bug; its traceback is in the logs
            first = str(e).strip().splitlines()[0]
            return {"status": "failed",
                    "message": f"job {handle.job_id} failed: {first} (logs: {handle.paths.stderr})"}

    def cancel(self, handle: Any) -> None:
        handle.cancel(check=False)

    def close(self) -> None:
        pass
