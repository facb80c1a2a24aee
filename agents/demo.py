"""The demo agent: the scripted model exploring a workspace, writing and running a program.

Served by `sessionflow worker` when no other agents are given, and used by
`sessionflow demo`. It needs no network and no API key.
"""

from __future__ import annotations

from sessionflow.agents.builtin import bash_tool, builtin_tools
from sessionflow.agents.definition import Agent, agent
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep

_PROGRAM = """\
def primes(n):
    found = []
    candidate = 2
    while len(found) < n:
        if all(candidate % p for p in found):
            found.append(candidate)
        candidate += 1
    return found


print("The first ten primes:", ", ".join(map(str, primes(10))))
"""

_WRITE_PROGRAM = f"cat > primes.py <<'EOF'\n{_PROGRAM}EOF\necho wrote primes.py"

DEMO_SCRIPT = Script(
    name="demo",
    delay=0.012,
    chunk_size=4,
    turns=[
        [
            ScriptStep(
                reasoning="The user wants to see me work. I'll look at the workspace first.",
                text="Let me look at the workspace first.",
                tool_calls=[ScriptedToolCall(tool="Bash", input={"command": "ls -la"})],
            ),
            ScriptStep(
                text="It's empty, so I'll write a small program that finds prime numbers.",
                tool_calls=[
                    ScriptedToolCall(
                        tool="Bash",
                        input={"command": _WRITE_PROGRAM},
                    )
                ],
            ),
            ScriptStep(
                text="Now I'll run it.",
                tool_calls=[ScriptedToolCall(tool="Bash", input={"command": "python3 primes.py"})],
            ),
            ScriptStep(
                text=(
                    "Done. I wrote `primes.py` in the workspace and ran it. It printed:\n\n"
                    "    {last_tool_output}\n\n"
                    "Every step above ran as a Temporal activity, so the session survives "
                    "a worker restart."
                )
            ),
        ],
        [
            ScriptStep(
                text=(
                    'You said "{last_user_text}". I am the scripted demo model, so I only echo; '
                    "this is turn {turn} and I can see {message_count} messages."
                )
            )
        ],
    ],
)

DEMO_SYSTEM = (
    "You are a careful coding agent working in a sandboxed workspace. Look around, "
    "write small programs, run them, and report what they printed."
)

demo_agent = agent("demo", model=DEMO_SCRIPT, system=DEMO_SYSTEM, tools=[bash_tool()])


def demo_agent_with(model: str) -> Agent:
    """The demo agent on another model (e.g. `anthropic/claude-sonnet-4-6`), with all
    the built-in tools."""
    return agent("demo", model=model, system=DEMO_SYSTEM, tools=builtin_tools())
