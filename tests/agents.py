"""Agents and scripts the tests use; importable by worker subprocesses too."""

from __future__ import annotations

from agents.builtin import bash_tool
from agents.definition import agent
from providers.scripted import Script, ScriptedToolCall, ScriptStep


def bash(command: str) -> ScriptedToolCall:
    return ScriptedToolCall(tool="Bash", input={"command": command})


# Two tool steps and an answer that quotes the last tool output.
TOOL_SCRIPT = Script(
    name="tooling",
    delay=0.0,
    chunk_size=5,
    turns=[
        [
            ScriptStep(text="Listing the workspace.", tool_calls=[bash("echo hello > a.txt; ls")]),
            ScriptStep(text="Reading it back.", tool_calls=[bash("cat a.txt")]),
            ScriptStep(text="The file says: {last_tool_output}."),
        ],
        [
            ScriptStep(
                text="Turn {turn}: you said {last_user_text}; I see {message_count} messages."
            )
        ],
    ],
)
tool_agent = agent("tooling", model=TOOL_SCRIPT, tools=[bash_tool()])

# Slow enough to be killed in the middle: text streams for about 3 seconds per step.
SLOW_SCRIPT = Script(
    name="slow",
    delay=0.05,
    chunk_size=2,
    turns=[
        [
            ScriptStep(
                text="First I will check where I am, slowly and carefully, step by step.",
                tool_calls=[bash("echo ran >> runs.txt; echo step-one")],
            ),
            ScriptStep(
                text="Now I will count to three, slowly and carefully, one number at a time.",
                tool_calls=[bash("sleep 1; echo 1 2 3")],
            ),
            ScriptStep(text="All done: {last_tool_output}, and nothing ran twice."),
        ]
    ],
)
slow_agent = agent("slow", model=SLOW_SCRIPT, tools=[bash_tool()])
