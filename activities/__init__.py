"""Every side effect of a session: model calls, tools, sandboxes and stream writes."""

from activities.model_step import ModelStepActivities
from activities.publish import PublishActivities
from activities.sandbox import SandboxActivities
from activities.tools import ToolActivities

__all__ = ["ModelStepActivities", "PublishActivities", "SandboxActivities", "ToolActivities"]
