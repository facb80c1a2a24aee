"""Every side effect of a session: model calls, tools, sandboxes and stream writes."""

from sessionflow.activities.compaction import CompactActivities
from sessionflow.activities.context import ContextActivities
from sessionflow.activities.erase import EraseActivities
from sessionflow.activities.model_step import ModelStepActivities
from sessionflow.activities.publish import PublishActivities
from sessionflow.activities.sandbox import SandboxActivities
from sessionflow.activities.scheduled_send import ScheduledSendActivities
from sessionflow.activities.tools import ToolActivities
from sessionflow.activities.transcript import TranscriptActivities
from sessionflow.activities.webhooks import WebhookActivities, WebhookConfig

__all__ = [
    "CompactActivities",
    "ContextActivities",
    "EraseActivities",
    "ModelStepActivities",
    "PublishActivities",
    "SandboxActivities",
    "ScheduledSendActivities",
    "ToolActivities",
    "TranscriptActivities",
    "WebhookActivities",
    "WebhookConfig",
]
