"""The model-step activity: one call to the agent's model, streamed to Redis."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.failures import to_application_error
from activities.heartbeat import heartbeating
from activities.step_recorder import StepRecorder
from agents.registry import AgentRegistry
from providers.base import ModelRequest, ToolSpec
from providers.registry import ModelRegistry
from sessionflow.errors import SessionflowError
from streams.chunks import DataChunk
from streams.publisher import StepStream, StreamPublisher
from workflows.contract import ActivityName, ModelStepParams, ModelStepResult


@dataclass
class ModelStepActivities:
    agents: AgentRegistry
    models: ModelRegistry
    publisher: StreamPublisher

    @activity.defn(name=ActivityName.MODEL_STEP)
    async def model_step(self, params: ModelStepParams) -> ModelStepResult:
        """Stream one model step to the session's stream and return what it produced.

        Chunks of every attempt are tagged with the attempt number; a retry first
        announces itself with a transient `data-retry` chunk so readers can drop the
        failed attempt's output.
        """
        ref = params.ref
        attempt = activity.info().attempt
        try:
            agent = self.agents.get(ref.agent)
            provider, model = self.models.resolve(agent.model_id)
        except SessionflowError as err:
            raise to_application_error(err) from err
        request = ModelRequest(
            model=model,
            system=agent.system,
            messages=params.messages,
            tools=[
                ToolSpec(name=t.name, description=t.description, input_schema=t.json_schema())
                for t in agent.tools
            ],
            attempt=attempt,
        )
        where = StepStream(ref.workflow_id, ref.message_id, ref.step, attempt)
        async with heartbeating(), self.publisher.writer(where) as writer:
            if attempt > 1:
                writer.emit(
                    DataChunk(
                        type="data-retry",
                        data={"step": ref.step, "attempt": attempt},
                        transient=True,
                    )
                )
            recorder = StepRecorder(
                writer.emit,
                message_id=ref.message_id,
                step=ref.step,
                attempt=attempt,
                model=agent.model_id,
            )
            recorder.begin()
            try:
                async for event in provider.stream(request):
                    recorder.on(event)
                return recorder.end()
            except SessionflowError as err:
                raise to_application_error(err) from err
