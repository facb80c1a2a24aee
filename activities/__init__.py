"""Every side effect of a session: model calls, tools, sandboxes and stream writes."""

from sessionflow.activities.compaction import CompactActivities
from sessionflow.activities.context import ContextActivities
from sessionflow.activities.erase import EraseActivities
from sessionflow.activities.model_step import ModelStepActivities
from sessionflow.activities.publish import PublishActivities
from sessionflow.activities.sandbox import SandboxActivities
from sessionflow.activities.tools import ToolActivities
from sessionflow.activities.transcript import TranscriptActivities

__all__ = [
    "CompactActivities",
    "ContextActivities",
    "EraseActivities",
    "ModelStepActivities",
    "PublishActivities",
    "SandboxActivities",
    "ToolActivities",
    "TranscriptActivities",
]
