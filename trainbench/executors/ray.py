"""The Ray executor: each planned run is a Ray task (``@ray.remote``) asking for
``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs, on an embedded local cluster (no
``--address``: ``ray.init()`` starts one on this machine) or a running one
(``--address auto|HOST:PORT``). Ray pins each task to its GPUs (CUDA_VISIBLE_DEVICES), so a
run's ``device: cuda`` is its own GPU. A task whose worker dies is retried by Ray
(``max_retries``); application errors are not (``retry_exceptions=False``): they are results.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

from trainbench.errors import InputError
from trainbench.executors import ExecOptions
from trainbench.executors.remote import WorkerLost
from trainbench.executors.worker import RunTask, probe, run_task


@ray.remote(num_cpus=1, max_retries=2, retry_exceptions=False)
def train_run(task: RunTask) -> dict[str, Any]:
    return run_task(task)


@ray.remote(num_cpus=0, max_retries=0)
def probe_out(path: str, token: str) -> str:
    return probe(path, token)


class RayBackend:
    name = "Ray"
    retries_itself = True

    def __init__(self, opts: ExecOptions) -> None:
        self.started = False
        if not ray.is_initialized():  # else: a runtime this process already joined (tests, notebooks)
            try:
                ray.init(address=opts.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at --address {opts.address}" if opts.address else "a local Ray"
                raise InputError(f"could not start or join {where}: {e}. Start a cluster with `ray start "
                                 "--head` (then --address auto), or drop --address to use this "
                                 "machine.") from None
            self.started = True
        have = ray.cluster_resources()
        gpus = opts.gpus_per_run if opts.gpus_per_run is not None else (1 if have.get("GPU") else 0)
        cpus = opts.cpus_per_run or 1
        for what, want, opt in (("CPU", cpus, "--cpus-per-run"), ("GPU", gpus, "--gpus-per-run")):
            if want > have.get(what, 0):
                self.close()
                raise InputError(f"{opt} {want:g}: the Ray cluster has {have.get(what, 0):g} {what}(s) in "
                                 f"all, so no run could ever start. Lower {opt}.")
        self.remote = train_run.options(num_cpus=cpus, num_gpus=gpus, max_retries=opts.max_retries)

    def probe(self, path: str, token: str) -> str:
        return ray.get(probe_out.remote(path, token), timeout=120)

    def submit(self, task: RunTask) -> Any:
        return self.remote.remote(task)

    def job_id(self, handle: Any) -> str:
        return handle.task_id().hex()

    def finished(self, handles: list[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout)
        return ready

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return ray.get(handle)
        except RayTaskError as e:  # a bug in the task (run_task catches what the engine reports)
            return {"status": "failed", "message": str(e).strip().splitlines()[-1]}
        except (TaskCancelledError, GetTimeoutError) as e:
            raise WorkerLost(type(e).__name__) from None
        except RayError as e:  # the worker or its node died, retries exhausted
            raise WorkerLost(f"{type(e).__name__}: {str(e).strip().splitlines()[0]}") from None

    def cancel(self, handle: Any) -> None:
        ray.cancel(handle, force=True)

    def close(self) -> None:
        if self.started:
            ray.shutdown()
            self.started = False
