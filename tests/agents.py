"""Agents and scripts the tests use; importable by worker subprocesses too."""

from __future__ import annotations

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import Agent, agent
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep


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


# -- context and state -------------------------------------------------------------

from pydantic import BaseModel  # noqa: E402

from sessionflow.agents.context import AgentContext  # noqa: E402
from sessionflow.agents.tools import ToolContext, tool  # noqa: E402


class Caller(BaseModel):
    user: str
    api_token: str
    premium: bool = False


class NoInput(BaseModel):
    pass


async def _whoami(_: NoInput, ctx: ToolContext) -> dict[str, object]:
    caller: Caller = ctx.context
    # Uses the secret without returning it, as a real tool calling an API would.
    return {"user": caller.user, "token_length": len(caller.api_token)}


whoami_tool = tool("whoami", "Who is calling", input_schema=NoInput, execute=_whoami)


def _system(ctx: AgentContext) -> str:
    caller = ctx.context
    return f"You are helping {caller.user if caller else 'nobody'}."


CONTEXT_SCRIPT = Script(
    name="context",
    delay=0,
    turns=[
        [
            ScriptStep(text="[{system}] ", tool_calls=[ScriptedToolCall(tool="whoami")]),
            ScriptStep(text="You are {last_tool_output}."),
        ]
    ],
)
context_agent = agent(
    "contextual",
    model=CONTEXT_SCRIPT,
    system=_system,
    tools=[whoami_tool],
    context_schema=Caller,
)


class Counter(BaseModel):
    count: int = 0


async def _increment(_: NoInput, ctx: ToolContext) -> int:
    state: Counter = ctx.state
    state.count += 1
    return state.count


increment_tool = tool(
    "increment", "Add one to the counter", input_schema=NoInput, execute=_increment
)

COUNTER_SCRIPT = Script(
    name="counter",
    delay=0,
    turns=[
        [
            ScriptStep(tool_calls=[ScriptedToolCall(tool="increment")]),
            ScriptStep(text="The counter is now {last_tool_output}."),
        ]
    ],
)
counter_agent = agent("counter", model=COUNTER_SCRIPT, tools=[increment_tool], state_schema=Counter)


# -- approvals and interrupts ------------------------------------------------------

APPROVAL_SCRIPT = Script(
    name="approval",
    delay=0,
    turns=[
        [
            ScriptStep(text="I need to run a command.", tool_calls=[bash("echo approved-run")]),
            ScriptStep(text="Result: {last_tool_output}"),
        ]
    ],
)
approval_agent = agent(
    "approver", model=APPROVAL_SCRIPT, tools=[bash_tool()], needs_approval={"Bash": True}
)

# Two calls in one step; only the destructive one needs a person's go-ahead.
SELECTIVE_SCRIPT = Script(
    name="selective",
    delay=0,
    turns=[
        [
            ScriptStep(tool_calls=[bash("echo safe"), bash("rm -f nothing.txt; echo removed")]),
            ScriptStep(text="Done: {last_tool_output}"),
        ]
    ],
)
selective_agent = agent(
    "selective",
    model=SELECTIVE_SCRIPT,
    tools=[bash_tool()],
    needs_approval={"Bash": lambda args: "rm " in args.command},
)


def sleeping_agent(name: str, seconds: int) -> Agent:
    """An agent whose one tool call, `sleep <seconds>`, runs until it is stopped. Each
    test file that looks for its command on the host picks its own `seconds`, so tests
    running beside it never find theirs (the sleeper's is `sleep 1000`)."""
    script = Script(
        name=name,
        delay=0,
        turns=[
            [
                ScriptStep(text="Sleeping.", tool_calls=[bash(f"sleep {seconds}")]),
                ScriptStep(text="Up."),
            ]
        ],
    )
    return agent(name, model=script, tools=[bash_tool()])


LONG_TEXT = " ".join(f"word{i}" for i in range(150))
STREAMING_SCRIPT = Script(
    name="streaming",
    delay=0.01,
    chunk_size=4,
    turns=[
        [ScriptStep(text=LONG_TEXT)],
        *[[ScriptStep(text="Short answer to {last_user_text}.")]] * 5,
    ],
)
streaming_agent = agent("streamer", model=STREAMING_SCRIPT)

SLEEPER_SCRIPT = Script(
    name="sleeper",
    delay=0,
    turns=[
        [
            ScriptStep(
                text="Sleeping.",
                tool_calls=[bash("echo $$ > shell.pid; sleep 1000")],
            ),
            ScriptStep(text="Woke up."),
        ],
        [ScriptStep(text="Back: {last_user_text}")],
    ],
)
sleeper_agent = agent("sleeper", model=SLEEPER_SCRIPT, tools=[bash_tool()])


REASONING_SCRIPT = Script(
    name="reasoning",
    delay=0,
    turns=[
        [
            ScriptStep(
                reasoning="Think first.",
                text="Running.",
                tool_calls=[
                    bash("echo hi"),
                    bash("exit 2"),
                    ScriptedToolCall(tool="Nope", input={}),
                ],
            ),
            ScriptStep(text="Done: {last_tool_output}"),
        ]
    ],
)
reasoning_agent = agent("reasoner", model=REASONING_SCRIPT, tools=[bash_tool()])

FLAKY_TEXT = "This answer fails half-way through on its first attempt."
flaky_agent = agent(
    "flaky",
    model=Script(name="flaky", delay=0, turns=[[ScriptStep(text=FLAKY_TEXT, fail_attempts=1)]]),
)

# Markdown for the web page, streamed a few characters at a time (so `**` and fences
# arrive split across deltas); the second turn is markup a page must show as text.
MARKDOWN_TEXT = """## A plan

Here is **bold**, *italic* and `inline code`.

- first item
- second, see [the docs](https://example.com/docs?a=1&b=2)
  - a nested item

1. one
2. two

```python
print("<b>not bold</b>")
```"""
HOSTILE_TEXT = (
    'Look: <img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script>.\n\n'
    "[click me](javascript:window.pwned=3) [also](javascript:alert(1)) "
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) "
    '**<a href="javascript:window.pwned=4">bold</a>** `<iframe src=x>`'
)
markdown_agent = agent(
    "markdown",
    model=Script(
        name="markdown",
        delay=0.005,
        chunk_size=3,
        turns=[[ScriptStep(text=MARKDOWN_TEXT)], [ScriptStep(text=HOSTILE_TEXT)]],
    ),
)

# A model no provider knows: every turn fails at once (ModelNotFound), with an `error` chunk.
unknown_model_agent = agent("misnamed", model="nowhere/no-such-model")

GATEWAY_AGENTS = [
    tool_agent, approval_agent, streaming_agent, flaky_agent, reasoning_agent,
    unknown_model_agent, markdown_agent,
]  # fmt: skip


# -- a tool whose command finishes before the worker dies --------------------------


class Job(BaseModel):
    pass


async def _job(_: Job, ctx: ToolContext) -> dict[str, object]:
    ran = await ctx.sandbox.exec("echo ran >> runs.txt; cat runs.txt | wc -l")
    import asyncio as _asyncio

    # Post-processing long enough for a test to kill the worker after the command.
    await _asyncio.sleep(4)
    return {"lines": ran.stdout.strip()}


job_tool = tool("job", "Run the job once", input_schema=Job, execute=_job, sandbox=True)
JOB_SCRIPT = Script(
    name="job",
    delay=0,
    turns=[
        [
            ScriptStep(tool_calls=[ScriptedToolCall(tool="job")]),
            ScriptStep(text="{last_tool_output}"),
        ]
    ],
)
job_agent = agent("job", model=JOB_SCRIPT, tools=[job_tool])

# The same job from a tool that must not run twice: a retry reports "outcome unknown".
once_job_tool = tool(
    "job",
    "Run the job at most once",
    input_schema=Job,
    execute=_job,
    retryable=False,
    sandbox=True,
)
once_job_agent = agent(
    "once-job", model=JOB_SCRIPT.model_copy(update={"name": "once-job"}), tools=[once_job_tool]
)


# -- compaction ------------------------------------------------------------------------

from sessionflow.compaction import Compaction  # noqa: E402

# A 3,000-token window: messages of 750 tokens need a summary by the fourth turn, and
# the summary streams for about 3 seconds (slow enough to kill its worker mid-way).
COMPACTING_SCRIPT = Script(
    name="compacting",
    delay=0.05,
    chunk_size=4,
    summary="The user sent long messages and I answered each with its turn number. " * 3,
    turns=[[ScriptStep(text="Turn {turn} of {message_count} messages.")]],
)
compacting_agent = agent(
    "compacting",
    model=COMPACTING_SCRIPT,
    context_window=3_000,
    compaction=Compaction(max_summary_tokens=100),
)
