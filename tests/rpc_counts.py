"""Count the calls a Temporal client makes, by kind and by workflow update name.

A client that asks again without end shows up here as a count that keeps growing,
which a test can bound; timing alone would only say it was slow."""

from __future__ import annotations

from collections import Counter
from typing import Any

from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowUpdateHandle,
)


class RpcCounter(Interceptor):
    """Counts `update:<name>`, `signal:<name>`, `describe` and `history` calls."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.counts)

    def client(self, temporal: Client) -> Client:
        """A client on the same connection whose calls are counted here."""
        config = temporal.config()
        config["interceptors"] = [*config["interceptors"], self]
        return Client(**config)

    def updates(self, name: str) -> int:
        return self.counts[f"update:{name}"]


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, counts: Counter[str]) -> None:
        super().__init__(next)
        self._counts = counts

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        self._counts[f"update:{input.update}"] += 1
        return await super().start_workflow_update(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        self._counts[f"signal:{input.signal}"] += 1
        await super().signal_workflow(input)

    async def describe_workflow(self, input: Any) -> Any:
        self._counts["describe"] += 1
        return await super().describe_workflow(input)
