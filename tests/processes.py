"""Worker processes for tests that kill workers, as a crash or an OOM kill would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sessionflow.cli.localstack import StackConfig

REPO = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`sessionflow worker` in a subprocess, pointed at the test stack."""

    def __init__(
        self,
        stack: StackConfig,
        *,
        task_queue: str,
        agents: str,
        sandbox_root: Path,
        log: Path,
        metrics_address: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self._command = [sys.executable, "-m", "sessionflow", "worker", "--agents", agents]
        self._env = {
            **os.environ,
            "TEMPORAL_ADDRESS": stack.temporal_address,
            "REDIS_URL": stack.redis_url,
            "SESSIONFLOW_TASK_QUEUE": task_queue,
            "SESSIONFLOW_SANDBOX_ROOT": str(sandbox_root),
            # The payload store the tests' own client and workers use (conftest).
            "SESSIONFLOW_PAYLOAD_STORE": stack.payload_store,
            "SESSIONFLOW_LOG_FORMAT": "json",
            "SESSIONFLOW_METRICS_ADDRESS": metrics_address,
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(
                self._command, env=self._env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        began = time.monotonic()
        while b"worker started" not in self._log.read_bytes()[offset:]:
            exited = self._process.poll()
            if exited is not None or time.monotonic() > began + timeout:
                how = f"exited with {exited}" if exited is not None else "still running"
                raise RuntimeError(
                    f"worker did not start ({how} after {time.monotonic() - began:.1f} s):\n"
                    f"{self._log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def stop(self) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit code."""
        if self._process is None or self._process.poll() is not None:
            return self._process.returncode if self._process else 0
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()
