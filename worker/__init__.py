"""The Temporal worker that runs sessions: `build_worker` and `run_worker`."""

from sessionflow.worker.build import WorkerOptions, build_worker
from sessionflow.worker.main import run_worker, stop_on_signals

__all__ = ["WorkerOptions", "build_worker", "run_worker", "stop_on_signals"]
