"""Settings: one typed model (`Settings`, pydantic-settings), read from the environment
once, with defaults for the local stack.

Every setting is a field here, with its variable, default and meaning; README.md's
Configuration table is generated from them (`python -m sessionflow.config --readme
README.md`, rendered by `sessionflow.settings_table`; CI checks it is current).
Variables are `SESSIONFLOW_<FIELD>`, but for the names other tools share (`TEMPORAL_*`,
`REDIS_URL`, the providers' API keys, `AWS_*`).
No other module reads the environment for configuration. How each field's value is
read is `sessionflow._setting_fields`; what values may be, `sessionflow._setting_values`;
the `module:attr` import paths some settings hold are resolved by
`sessionflow.import_paths`. All of their public names are importable from here.

`Settings(...)` takes the values given and the defaults; `Settings.from_env()` reads the
environment (or a mapping given), and derives what depends on it: without `REDIS_URL`,
the local stack's Redis with the password `sessionflow dev` keeps in
`<data dir>/redis.password` when that file exists, and `SESSIONFLOW_TENANT` is then
`dev`, so the CLI names sessions `dev:<id>` as the gateway does for `sessionflow dev`'s
development key. An empty variable counts as unset, but for `SESSIONFLOW_TENANT` (empty:
no tenant) and `SESSIONFLOW_METRICS_ADDRESS` (empty: no metrics).

A bad value raises `ConfigError` (an `InvalidInput`), from either: one line naming the
variable and what it takes (the command line prints it and exits with status 2).

Payloads of at least SESSIONFLOW_PAYLOAD_THRESHOLD bytes (activity inputs and results,
signals, queries' and updates' answers, continue-as-new input) go to the payload store
and Temporal records a reference (see sessionflow.storage): `file://<dir>` for one
machine (the local stack), `s3://<bucket>[/<prefix>]` for anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sessionflow import settings_table
from sessionflow._setting_fields import (
    Parse,
    choice,
    env_names,
    optional,
    positive,
    read_address,
    read_api_keys,
    read_idle_ttl,
    read_log_format,
    read_metrics_address,
    read_names,
    read_optional_stripped,
    read_payload_store,
    read_prices,
    read_stripped,
    read_switch,
    read_tenant,
    read_webhook_secrets,
    shown,
    whole,
)
from sessionflow._setting_values import (
    DEFAULT_IDLE_TTL_SECONDS,
    DEFAULT_PAYLOAD_THRESHOLD,
    LOCAL_REDIS_PASSWORD_FILE,
    LOCAL_REDIS_URL,
    LOCAL_TENANT,
    LOG_LEVELS,
    MAX_PAYLOAD_THRESHOLD,
    PAYLOADS_DIR,
    ConfigError,
    PayloadStore,
    WorkerRole,
    agent_task_queue,
    check_long_requests,
    check_redis_url,
    env_integer,
    local_redis_password,
    parse_address,
    parse_api_keys,
    parse_build_id,
    parse_deployment_name,
    parse_http_url,
    parse_idle_ttl,
    parse_payload_store,
    parse_payload_threshold,
    parse_task_queue,
    parse_tenant,
)
from sessionflow.import_paths import import_factory, import_object
from sessionflow.prices import Price
from sessionflow.settings_table import BEGIN, COMMAND, END

__all__ = [
    "BEGIN",
    "COMMAND",
    "DEFAULT_IDLE_TTL_SECONDS",
    "DEFAULT_PAYLOAD_THRESHOLD",
    "END",
    "LOCAL_REDIS_PASSWORD_FILE",
    "LOCAL_REDIS_URL",
    "LOCAL_TENANT",
    "LOG_LEVELS",
    "MAX_PAYLOAD_THRESHOLD",
    "PAYLOADS_DIR",
    "ConfigError",
    "PayloadStore",
    "Settings",
    "WorkerRole",
    "agent_task_queue",
    "check_long_requests",
    "check_redis_url",
    "env_integer",
    "import_factory",
    "import_object",
    "local_redis_password",
    "markdown",
    "parse_address",
    "parse_api_keys",
    "parse_idle_ttl",
    "parse_payload_store",
    "parse_payload_threshold",
    "parse_tenant",
    "variables",
    "with_table",
]

PREFIX = "SESSIONFLOW_"
# Empty, these say something (no tenant, no metrics); any other empty variable is unset.
_EMPTY_MEANS_NONE = ("SESSIONFLOW_TENANT", "SESSIONFLOW_METRICS_ADDRESS")
# The environment `Settings.from_env` reads; None: `Settings(...)` reads none.
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("_ENVIRONMENT", default=None)


class Settings(BaseSettings):
    """Every setting of a worker, gateway, client or command; see the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        # Values arrive as text and each field parses its own (lists, key maps).
        enable_decoding=False,
    )

    # -- Temporal ------------------------------------------------------------------------
    temporal_address: Annotated[str, Parse(read_address)] = Field(
        "127.0.0.1:7233",
        validation_alias=env_names("TEMPORAL_ADDRESS"),
        description="Temporal frontend",
    )
    temporal_namespace: Annotated[str, Parse(read_stripped)] = Field(
        "default",
        validation_alias=env_names("TEMPORAL_NAMESPACE"),
        description="Temporal namespace",
    )
    temporal_ui_url: Annotated[str, Parse(parse_http_url)] = Field(
        "http://127.0.0.1:8233",
        validation_alias=env_names("TEMPORAL_UI_URL"),
        description="base of the UI links printed by the CLI",
    )
    task_queue: Annotated[str, Parse(parse_task_queue)] = Field(
        "sessionflow",
        description="the base task queue: an agent's sessions run on `<base>.<agent>` "
        "(`sessionflow.assistant`), which only workers serving that agent poll",
    )
    deployment: Annotated[str, Parse(parse_deployment_name)] = Field(
        "sessionflow",
        description="the Worker Deployment every worker joins; sessions are pinned to the "
        "build they started on (see Deploying under Operations)",
    )
    build_id: Annotated[str | None, Parse(parse_build_id)] = Field(
        None,
        description="this worker's build in the deployment; unset: the package version and "
        "a hash of its source (`sessionflow.worker.versions`)",
    )
    worker_role: Annotated[WorkerRole, choice(*(r.value for r in WorkerRole))] = Field(
        WorkerRole.ALL,
        description="what a worker runs: `all`, `workflows` (workflow tasks and their local "
        "activities) or `activities`; `sessionflow worker --role` overrides it",
    )
    interrupt_notices: Annotated[bool, Parse(read_switch)] = Field(
        True,
        description="`on`/`off` (workers): running steps learn of interrupts from a counter "
        "in Redis and heartbeat every 2 s; `off`, they heartbeat every 0.4 s, five times the "
        "Temporal server's heartbeat writes, so that Temporal's cancel alone reaches them as "
        "fast",
    )
    redis_url: Annotated[str, Parse(check_redis_url)] = Field(
        LOCAL_REDIS_URL,
        validation_alias=env_names("REDIS_URL"),
        repr=False,
        description="Redis for streams, with its password: "
        "`redis://:<password>@host:port/db` (`rediss://` for TLS), or any node of a Redis "
        "Cluster: `redis+cluster://:<password>@host:port` (`rediss+cluster://`; see "
        "Operations); each process pools up to 10,000 connections (one per live reader or "
        "write in flight), `?max_connections=N` to change",
        json_schema_extra=shown(
            "`redis://127.0.0.1:6379/0`, with the local stack's password from "
            "`<data dir>/redis.password` when that file exists"
        ),
    )
    temporal_tls: Annotated[bool | None, Parse(read_switch)] = Field(
        None,
        validation_alias=env_names("TEMPORAL_TLS"),
        description="`on`/`off`: connect to Temporal over TLS; `off` with an API key or a "
        "TLS file is refused",
        json_schema_extra=shown(
            "on when any `TEMPORAL_TLS_*` or `TEMPORAL_API_KEY` is set, else off"
        ),
    )
    temporal_tls_ca: Path | None = Field(
        None,
        validation_alias=env_names("TEMPORAL_TLS_CA"),
        description="PEM file of the CA(s) that sign the Temporal server's certificate",
        json_schema_extra=shown("the system's root CAs"),
    )
    temporal_tls_cert: Path | None = Field(
        None,
        validation_alias=env_names("TEMPORAL_TLS_CERT"),
        description="PEM client certificate for mTLS (with `TEMPORAL_TLS_KEY`)",
    )
    temporal_tls_key: Path | None = Field(
        None,
        validation_alias=env_names("TEMPORAL_TLS_KEY"),
        description="PEM private key of `TEMPORAL_TLS_CERT`",
    )
    temporal_tls_server_name: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        validation_alias=env_names("TEMPORAL_TLS_SERVER_NAME"),
        description="the name sent as SNI and checked against the server's certificate",
        json_schema_extra=shown("the host of `TEMPORAL_ADDRESS`"),
    )
    temporal_api_key: str | None = Field(
        None,
        validation_alias=env_names("TEMPORAL_API_KEY"),
        repr=False,
        description="Temporal Cloud API key (implies TLS); never logged",
    )
    # -- the command line and the local stack --------------------------------------------
    tenant: Annotated[str | None, Parse(read_tenant)] = Field(
        None,
        description="the tenant the CLI's session commands act for: session `<id>` is "
        "`<tenant>:<id>`, as the gateway names a tenant's sessions (letters, digits, `_` or "
        "`-`, up to 64; empty for none)",
        json_schema_extra=shown(
            "`dev` with the local stack on its defaults (`REDIS_URL` unset, "
            "`<data dir>/redis.password` there), else none"
        ),
    )
    data_dir: Path = Field(
        Path(".sessionflow"),
        description="local stack data (SQLite, Redis AOF, the Redis password in "
        "`redis.password`, logs, the file payload store), readable by its owner alone (0700 "
        "directories, 0600 files; tightened at start if an older version left it open)",
    )
    # -- sandboxes -----------------------------------------------------------------------
    sandbox_backend: Annotated[str, Parse(read_stripped)] = Field(
        "local",
        validation_alias=env_names("SESSIONFLOW_SANDBOX"),
        description="the sandbox backend: `local`, `e2b`, a name registered with "
        "`register_sandbox_backend`, or an import path `module:attr` naming a backend "
        "instance, or a class or factory (called with no arguments, or else with the "
        "`Settings`)",
    )
    sandbox_root: Path | None = Field(
        None,
        description="local sandbox workspaces",
        json_schema_extra=shown("`<data dir>/sandboxes`"),
    )
    sandbox_isolation: Annotated[str, choice("bubblewrap", "none")] = Field(
        "bubblewrap",
        description="how the local sandbox confines commands: `bubblewrap` (own namespaces, "
        "uid 65534 without capabilities, only system directories and the workspace, limits; "
        "refuses to run where bubblewrap cannot be set up) or `none` (unconfined, for "
        "trusted code only; logged as a warning at every start)",
    )
    sandbox_network: Annotated[str, choice("none", "egress")] = Field(
        "none",
        description="local sandbox network: `none` (a private loopback only) or `egress` "
        "(outbound through `slirp4netns`, never to the host's loopback, but to its other "
        "addresses and networks: keep Redis, Temporal and the gateway off them)",
    )
    sandbox_uid: Annotated[int, whole(1, 2**32 - 2)] = Field(
        1_900_000_000,
        description="the first host uid (and gid) of the range local sandboxes run as when "
        "the worker runs as root, one uid per sandbox (a non-root worker's commands run as "
        "its own uid)",
    )
    sandbox_uids: Annotated[int, whole(1, 2**31)] = Field(
        65_536,
        description="how many host uids that range holds (1: every sandbox runs as "
        "`SESSIONFLOW_SANDBOX_UID`)",
    )
    sandbox_limits: Annotated[str, choice("kernel", "best-effort")] = Field(
        "kernel",
        description="`kernel`: local sandboxes are refused where the host cannot enforce "
        "their share (cgroups, a loop-mounted workspace) and the seccomp filter; "
        "`best-effort`: run without what is missing (the start line names it)",
    )
    sandbox_memory_mb: Annotated[int, whole(16)] = Field(
        4096,
        description="memory share of a local sandbox, all its processes and commands "
        "together (a cgroup; at least 16)",
    )
    sandbox_cpu_percent: Annotated[int, whole()] = Field(
        100,
        description="CPU share of a local sandbox, in percent of one core (a cgroup's CPU quota)",
    )
    sandbox_disk_mb: Annotated[int, whole(16)] = Field(
        2048,
        description="size of a local sandbox's workspace (a sparse, loop-mounted ext4 image; "
        "at least 16)",
    )
    sandbox_max_processes: Annotated[int, whole()] = Field(
        512,
        description="processes and threads a local sandbox may have at once, all its "
        "commands together (a cgroup's `pids.max`; also each command's per-uid limit)",
    )
    sandbox_max_memory_mb: Annotated[int, whole()] = Field(
        4096,
        description="address space of each process of a local sandbox command (MiB; the "
        "sandbox's total is `SESSIONFLOW_SANDBOX_MEMORY_MB`)",
    )
    sandbox_max_cpu_seconds: Annotated[int, whole()] = Field(
        600, description="CPU seconds of each process of a local sandbox command"
    )
    sandbox_max_file_mb: Annotated[int, whole()] = Field(
        1024, description="largest file a local sandbox command may write (MiB)"
    )
    sandbox_max_open_files: Annotated[int, whole()] = Field(
        4096, description="open files of each process of a local sandbox command"
    )
    sandbox_tmp_mb: Annotated[int, whole()] = Field(
        256,
        description="size of a local sandbox command's `/tmp` (memory-backed; `/dev/shm` "
        "gets at most 64 MiB)",
    )
    e2b_template: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None, description="E2B sandbox template", json_schema_extra=shown("E2B's default")
    )
    e2b_timeout_seconds: Annotated[int, whole()] = Field(
        3600,
        validation_alias=env_names("SESSIONFLOW_E2B_TIMEOUT"),
        description="E2B sandbox lifetime (s)",
    )
    e2b_api_key: str | None = Field(
        None,
        validation_alias=env_names("E2B_API_KEY"),
        repr=False,
        description="the E2B backend's key",
    )
    # -- streams and sessions ------------------------------------------------------------
    stream_max_len: Annotated[int, whole()] = Field(
        10_000,
        validation_alias=env_names("SESSIONFLOW_STREAM_MAXLEN"),
        description="approximate entries kept per session stream",
    )
    stream_ttl_seconds: Annotated[int, whole()] = Field(
        7 * 24 * 3600,
        validation_alias=env_names("SESSIONFLOW_STREAM_TTL"),
        description="seconds a stream lives after its last chunk",
    )
    stream_call_budget: Annotated[int, whole(0)] = Field(
        256 * 1024,
        description="bytes of progress (preliminary tool output, as stored in Redis) one "
        "tool call may stream; past it progress is summarised, not streamed (see Built-in "
        "tools)",
    )
    stream_turn_budget: Annotated[int, whole(0)] = Field(
        1024 * 1024,
        description="bytes of progress all the tool calls of one turn may stream together",
    )
    context_ttl_seconds: Annotated[int, whole()] = Field(
        24 * 3600,
        validation_alias=env_names("SESSIONFLOW_CONTEXT_TTL"),
        description="seconds a turn's context lives in Redis after its last use",
    )
    idle_ttl_seconds: Annotated[int | None, Parse(read_idle_ttl)] = Field(
        DEFAULT_IDLE_TTL_SECONDS,
        validation_alias=env_names("SESSIONFLOW_IDLE_TTL"),
        description="seconds a session may go without a message before it closes itself, "
        "for agents that set no `idle_ttl` (`off` or `0`: never)",
    )
    upgrade_on_new_build: Annotated[bool, Parse(read_switch)] = Field(
        False,
        description="`on`/`off` (clients): sessions of agents that set no "
        "`upgrade_on_new_build` move to the deployment's current build when a message finds "
        "them pinned to an older one (continue-as-new); every build must then accept what "
        "older builds carry over (see Moving long idle sessions to new code under Operations)",
    )
    # -- the gateway ---------------------------------------------------------------------
    api_keys: Annotated[dict[str, str], Parse(read_api_keys)] = Field(
        default_factory=dict,
        repr=False,
        description="gateway keys and their tenants: `key:tenant,key:tenant`, each key at "
        "least 8 characters (e.g. `$(openssl rand -hex 16):tenant-a`), each tenant letters, "
        "digits, `_` or `-`",
        json_schema_extra=shown("(none)"),
    )
    default_agent: Annotated[str, Parse(read_stripped)] = Field(
        "demo",
        description="the gateway's agent when a request names none; `sessionflow "
        "gateway`/`dev` refuse to start when it is not among the agents they serve",
        json_schema_extra=shown("`demo` (else the first agent served)"),
    )
    # -- webhooks ------------------------------------------------------------------------
    webhook_secret: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        repr=False,
        description="the secret webhooks are signed with (HMAC-SHA256, header "
        "`Sessionflow-Signature`) for sessions without a tenant and for tenants "
        "`SESSIONFLOW_WEBHOOK_SECRETS` gives none; without one such webhooks are not sent "
        "(the delivery fails, saying so); never logged",
        json_schema_extra=shown("(none)"),
    )
    webhook_secrets: Annotated[dict[str, str], Parse(read_webhook_secrets)] = Field(
        default_factory=dict,
        repr=False,
        description="a webhook secret per tenant: `tenant:secret,tenant:secret` (secrets of "
        "8+ characters; a tenant's sessions are `<tenant>:<id>`, as the gateway names "
        "them); never logged",
        json_schema_extra=shown("(none)"),
    )
    webhook_allow_private: Annotated[bool, Parse(read_switch)] = Field(
        False,
        description="`on`: webhooks may go to private, loopback and link-local addresses "
        "(off: a URL whose host resolves to any such address, or a redirect to one, is "
        "refused, against server-side request forgery)",
        json_schema_extra=shown("`off`"),
    )
    webhook_timeout: Annotated[float, positive(float)] = Field(
        10.0, description="seconds one webhook attempt may take (connect, send, answer)"
    )
    webhook_max_retry_interval: Annotated[float, positive(float)] = Field(
        300.0,
        description="the longest pause between webhook attempts (s); pauses double from 1 s",
    )
    webhook_retry_for: Annotated[int, whole()] = Field(
        3 * 24 * 3600,
        description="seconds after its event a webhook is still retried; then it is dropped "
        "(the delivery workflow fails, saying so)",
    )
    gateway_host: Annotated[str, Parse(read_stripped)] = Field(
        "127.0.0.1", description="address the gateway listens on"
    )
    gateway_port: Annotated[int, whole(1, 65535)] = Field(
        8000, description="port the gateway listens on"
    )
    max_body_bytes: Annotated[int, whole()] = Field(
        16 * 1024 * 1024,
        description="largest request body that posts a message (files included) the gateway "
        "accepts; other bodies are at most 256 KiB",
    )
    sse_heartbeat: Annotated[float, positive(float)] = Field(
        15.0, description="seconds between SSE keep-alive comments"
    )
    gateway_max_connections: Annotated[int, positive(int)] = Field(
        1000,
        description="connections one gateway process serves at once (idle keep-alive ones "
        "included); past it a request gets 503 `server_busy` with `Retry-After`",
    )
    gateway_keep_alive_timeout: Annotated[float, positive(float)] = Field(
        5.0, description="seconds an idle connection is kept open between requests"
    )
    gateway_header_timeout: Annotated[float, positive(float)] = Field(
        10.0,
        description="seconds a request's headers may take, from its first byte (or from the "
        "connection's opening); then 408 and the connection is closed. Headers over 64 KiB: "
        "431",
    )
    gateway_body_timeout: Annotated[float, positive(float)] = Field(
        30.0,
        description="seconds a request's body may take to arrive after its headers; then "
        "408 `request_timeout`",
    )
    max_streams_per_tenant: Annotated[int, positive(int)] = Field(
        100,
        description="long-lived requests (SSE streams: `/v1/sessions/{id}/stream`, "
        "`/api/chat`, `/api/chat/{id}/stream`; outcome long-polls: "
        "`/v1/sessions/{id}/messages/{mid}/outcome`) one tenant may hold open at once, per "
        "gateway process; past it 429 `too_many_streams` with `Retry-After`",
    )
    max_long_requests: Annotated[int | None, optional(positive(int))] = Field(
        None,
        description="long-lived requests of all tenants at once, per gateway process (at "
        "most the connection limit); past it 503 `server_busy` with `Retry-After`",
        json_schema_extra=shown("three quarters of `SESSIONFLOW_GATEWAY_MAX_CONNECTIONS`"),
    )
    long_request_reserve: Annotated[int | None, optional(whole(0))] = Field(
        None,
        description="of those, the last free ones only a tenant that holds none may take: "
        "one tenant holds at most min(`SESSIONFLOW_MAX_STREAMS_PER_TENANT`, long requests "
        "\N{MINUS SIGN} reserve); 0 to one less than the long requests",
        json_schema_extra=shown("a fifth of `SESSIONFLOW_MAX_LONG_REQUESTS`"),
    )
    # -- model providers -----------------------------------------------------------------
    providers: Annotated[tuple[str, ...], Parse(read_names)] = Field(
        (),
        description="extra model providers, comma-separated import paths `module:attr`, "
        "each naming a provider instance, or a class or factory (called with no arguments, "
        "or else with the `Settings`); a model id `<name>/<model>` goes to the provider with "
        "that `name`, and one named like a built-in (`anthropic`) replaces it",
    )
    anthropic_api_key: str | None = Field(
        None,
        validation_alias=env_names("ANTHROPIC_API_KEY"),
        repr=False,
        description="the Anthropic provider's key",
    )
    anthropic_base_url: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        validation_alias=env_names("ANTHROPIC_BASE_URL"),
        description="an Anthropic-compatible endpoint",
        json_schema_extra=shown("Anthropic's"),
    )
    anthropic_max_tokens: Annotated[int, whole()] = Field(
        8192, description="`max_tokens` per model step"
    )
    anthropic_thinking_budget: Annotated[int, whole(0)] = Field(
        0, description="extended thinking budget (0: off)"
    )
    openai_api_key: str | None = Field(
        None,
        validation_alias=env_names("OPENAI_API_KEY"),
        repr=False,
        description="the `openai/` provider's key",
        json_schema_extra=shown("(a placeholder when `OPENAI_BASE_URL` is set)"),
    )
    openai_base_url: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        validation_alias=env_names("OPENAI_BASE_URL"),
        description="an OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, OpenRouter)",
        json_schema_extra=shown("OpenAI's"),
    )
    openai_max_tokens: Annotated[int, whole()] = Field(
        8192,
        description="the output-token limit of each `openai/` model step (for agents that "
        "set no `max_output_tokens`): `max_completion_tokens` to OpenAI's own API, "
        "`max_tokens` to any other server",
    )
    prices: Annotated[dict[str, Price], Parse(read_prices)] = Field(
        default_factory=dict,
        description="model prices over the built-in table, in US dollars per million tokens: "
        'a JSON object `{"openai/llama3.1": {"input": 0, "output": 0}, ...}` (also '
        "`cache_write`, `cache_read`; unset, they cost as input) or the path of a file "
        "holding one; an agent's `prices=` override these",
        json_schema_extra=shown("(none: the built-in table, `sessionflow.prices`)"),
    )
    # -- the codec server (`sessionflow codec-server`) ------------------------------------
    codec_host: Annotated[str, Parse(read_stripped)] = Field(
        "127.0.0.1",
        description="address the codec server listens on; anything but a loopback address "
        "needs `SESSIONFLOW_CODEC_TOKEN`",
    )
    codec_port: Annotated[int, whole(1, 65535)] = Field(
        8081, description="port the codec server listens on"
    )
    codec_token: str | None = Field(
        None,
        repr=False,
        description="bearer token the codec server requires of every request "
        "(`Authorization: Bearer <token>`); never logged",
        json_schema_extra=shown("(none: loopback only)"),
    )
    codec_cors_origins: Annotated[tuple[str, ...], Parse(read_names)] = Field(
        (
            "http://localhost:8233",
            "http://127.0.0.1:8233",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
        ),
        description="origins of the Temporal UI that may call the codec server from the "
        "browser, comma-separated",
        json_schema_extra=shown("the dev server's UI (`:8233`) and compose's (`:8080`)"),
    )
    # -- traces (OpenTelemetry's own variables, `sessionflow.tracing`) --------------
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias=env_names("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="where workers send OpenTelemetry traces (OTLP); set (or the traces "
        "endpoint), workers trace turns, model steps and tool calls, with the `otel` extra. "
        "The exporter reads the other `OTEL_*` variables itself",
        json_schema_extra=shown("(none: no traces)"),
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias=env_names("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        description="the OTLP endpoint for traces alone (the full URL, `.../v1/traces`)",
        json_schema_extra=shown("(none)"),
    )
    otel_exporter_otlp_protocol: str | None = Field(
        None,
        validation_alias=env_names("OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="`http/protobuf`, or `grpc` (needs opentelemetry-exporter-otlp-proto-grpc)",
        json_schema_extra=shown("`http/protobuf`"),
    )
    otel_traces_exporter: str | None = Field(
        None,
        validation_alias=env_names("OTEL_TRACES_EXPORTER"),
        description="`none` turns traces off even with an endpoint set",
        json_schema_extra=shown("(otlp)"),
    )
    # -- workers -------------------------------------------------------------------------
    metrics_address: Annotated[str, Parse(read_metrics_address)] = Field(
        "127.0.0.1:9464",
        description="the worker's Prometheus endpoint (`/metrics`), `host:port`. Unset: "
        "9464, or when another worker on the host has it, the next free port (the worker's "
        "start line says which). Set: exactly that address, and a port in use is an error; "
        "`host:0` takes any free port; empty turns metrics off",
        json_schema_extra=shown("`127.0.0.1:9464`, else the next free port"),
    )
    max_concurrent_activities: Annotated[int, whole()] = Field(
        200,
        description="activities one worker runs at once, per task queue it polls (each "
        "agent's, and the shared one)",
    )
    # Temporal's worker refuses fewer than 2 while it caches sessions.
    max_concurrent_workflow_tasks: Annotated[int, whole(2)] = Field(
        100,
        description="workflow tasks one worker runs at once, per task queue it polls (at least 2)",
    )
    max_cached_workflows: Annotated[int, whole(0)] = Field(
        1000,
        description="sessions kept in a worker's cache, per task queue it polls (evicted "
        "ones replay from history)",
    )
    log_format: Annotated[str | None, Parse(read_log_format)] = Field(
        None,
        description="`json`, or `console` (default on a terminal)",
        json_schema_extra=shown("auto"),
    )
    log_level: Annotated[str, choice(*LOG_LEVELS)] = Field(
        "info", description="log level of `dev` and `worker` (other commands: `warning`)"
    )
    # -- large payloads ------------------------------------------------------------------
    payload_store: Annotated[str | None, Parse(read_payload_store)] = Field(
        None,
        description="where payloads of at least `SESSIONFLOW_PAYLOAD_THRESHOLD` bytes go "
        "(activity inputs and results, signals, query and update answers, continue-as-new "
        "input), with only a reference in Temporal's history: `file://<dir>` (one machine: "
        "the local stack) or `s3://<bucket>[/<prefix>]` (S3 or an S3-compatible server; "
        "needs `pip install 'sessionflow[s3]'` and conditional writes). Every worker and "
        "client of a namespace must use the same store. Objects are immutable and "
        "content-addressed; a session's are deleted when the session is (fork holds "
        "permitting), all others never by Sessionflow: a bucket lifecycle rule, if any, must "
        "keep objects at least as long as a session's run can stay open (an idle session "
        "replays from history, references included) plus the namespace's retention",
        json_schema_extra=shown("`file://<data dir>/payloads`"),
    )
    payload_threshold: Annotated[int, Parse(parse_payload_threshold)] = Field(
        DEFAULT_PAYLOAD_THRESHOLD,
        description="size in bytes from which a payload goes to the payload store (0 to "
        "1048576; 0 stores every payload)",
    )
    s3_endpoint_url: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        validation_alias=env_names("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="an `s3://` store's endpoint, for S3-compatible servers (MinIO, Ceph, R2, ...)",
        json_schema_extra=shown("AWS S3"),
    )
    s3_region: Annotated[str | None, Parse(read_optional_stripped)] = Field(
        None,
        validation_alias=env_names("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="an `s3://` store's region",
        json_schema_extra=shown("boto's configuration"),
    )
    aws_access_key_id: str | None = Field(
        None,
        validation_alias=env_names("AWS_ACCESS_KEY_ID"),
        repr=False,
        description="an `s3://` store's access key (it needs `s3:PutObject`, "
        "`s3:GetObject`, `s3:DeleteObject` and `s3:ListBucket` on the store's prefix); "
        "never logged",
        json_schema_extra=shown(
            "boto's credential chain (`AWS_PROFILE`, config files, instance or pod roles)"
        ),
    )
    aws_secret_access_key: str | None = Field(
        None,
        validation_alias=env_names("AWS_SECRET_ACCESS_KEY"),
        repr=False,
        description="the secret of `AWS_ACCESS_KEY_ID`; never logged",
        json_schema_extra=shown("boto's credential chain"),
    )
    aws_session_token: str | None = Field(
        None,
        validation_alias=env_names("AWS_SESSION_TOKEN"),
        repr=False,
        description="a session token for temporary credentials; never logged",
        json_schema_extra=shown("boto's credential chain"),
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise _one_line(err) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The values given, then the environment `from_env` reads; no .env file, no
        # secrets directory.
        return init_settings, _Environment(settings_cls)

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: ValidationInfo) -> Any:
        """Each field's own parser (its `Parse`), told the field's variable."""
        name = info.field_name
        if name is None or value is None:  # None: unset, where a field may be
            return value
        for marker in cls.model_fields[name].metadata:
            if isinstance(marker, Parse):
                return marker.parse(value, variables(name)[0])
        return value

    @_model_validator(mode="after")
    def _consistent(self) -> Settings:
        thinking, max_tokens = self.anthropic_thinking_budget, self.anthropic_max_tokens
        if thinking and not 1024 <= thinking < max_tokens:
            raise ConfigError(
                "SESSIONFLOW_ANTHROPIC_THINKING_BUDGET must be 0 (off) or from 1024 to one "
                f"less than SESSIONFLOW_ANTHROPIC_MAX_TOKENS ({max_tokens}), got {thinking}"
            )
        if self.sandbox_uid + self.sandbox_uids - 1 > 2**32 - 2:
            raise ConfigError(
                f"SESSIONFLOW_SANDBOX_UID + SESSIONFLOW_SANDBOX_UIDS must stay below 2^32 - 1, "
                f"got {self.sandbox_uid} + {self.sandbox_uids}"
            )
        check_long_requests(
            self.gateway_max_connections, self.long_requests, self.long_request_reserve_slots
        )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment (`env`, by default `os.environ`) gives; a bad
        value raises `ConfigError`, one line naming the variable and what it takes."""
        env = os.environ if env is None else env
        token = _ENVIRONMENT.set(env)
        try:
            settings = cls()
        finally:
            _ENVIRONMENT.reset(token)
        # Without REDIS_URL, the local stack's Redis on its default port, with the
        # password `sessionflow dev` keeps in the data directory; SESSIONFLOW_TENANT is
        # then what the web page's development key sees.
        given = settings.model_fields_set
        local_password = None if "redis_url" in given else local_redis_password(settings.data_dir)
        if not local_password:
            return settings
        derived: dict[str, Any] = {
            "redis_url": LOCAL_REDIS_URL.replace("//", f"//:{quote(local_password, safe='')}@", 1)
        }
        if "tenant" not in given:
            derived["tenant"] = LOCAL_TENANT
        return settings.model_copy(update=derived)

    @property
    def sandboxes(self) -> Path:
        """Where local sandboxes keep their workspaces."""
        return self.sandbox_root or self.data_dir / "sandboxes"

    @property
    def payloads(self) -> PayloadStore:
        """The payload store, parsed (`InvalidInput` when `payload_store` is bad)."""
        if self.payload_store is None:
            return PayloadStore("file", path=self.data_dir / PAYLOADS_DIR)
        return parse_payload_store(self.payload_store)

    @property
    def metrics_next_free(self) -> bool:
        """Whether the metrics endpoint may take the next free port when its default is
        taken (another worker on the host): only for the default; a configured address is
        used as given or not at all."""
        return "metrics_address" not in self.model_fields_set

    @property
    def long_requests(self) -> int:
        """Long-lived gateway requests of all tenants at once (per process)."""
        if self.max_long_requests is not None:
            return self.max_long_requests
        return max(1, self.gateway_max_connections * 3 // 4)

    @property
    def long_request_reserve_slots(self) -> int:
        """Free long-request slots only a tenant that holds none may take."""
        if self.long_request_reserve is not None:
            return self.long_request_reserve
        return self.long_requests // 5

    def workflow_url(self, workflow_id: str) -> str:
        """Where the Temporal UI shows a session."""
        return (
            f"{self.temporal_ui_url}/namespaces/{quote(self.temporal_namespace)}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )


def variables(field: str) -> tuple[str, ...]:
    """The environment variable(s) of a `Settings` field, the first read first."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    if isinstance(alias, str):
        return (alias,)
    return (f"{PREFIX}{field.upper()}",)


class _Environment(EnvSettingsSource):
    """The environment `Settings.from_env` was given (none for `Settings(...)`), where an
    empty variable is unset but for those whose empty value means none."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRONMENT.get() or {}
        return {
            name.lower(): value
            for name, value in env.items()
            if value.strip() or name in _EMPTY_MEANS_NONE
        }


def _one_line(err: ValidationError) -> ConfigError:
    """The first problem of `err` as a `ConfigError` naming the variable. A parser's own
    `ConfigError` is kept; pydantic's are told without the value (it may be a secret)."""
    first = err.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    location = first["loc"][0] if first["loc"] else ""
    names = {alias.lower(): field for field in Settings.model_fields for alias in variables(field)}
    field = names.get(str(location).lower(), str(location))
    variable = variables(field)[0] if field in Settings.model_fields else field
    return ConfigError(f"{variable}: {' '.join(first['msg'].split())}")


# -- README.md's Configuration table (`sessionflow.settings_table`) ------------------


def markdown() -> str:
    """The table: one row per setting, its variable(s), default and meaning."""
    return settings_table.markdown(Settings.model_fields, variables)


def with_table(readme: str) -> str:
    """`readme` with the table between its markers replaced by the current one."""
    return settings_table.with_table(readme, markdown)


if __name__ == "__main__":
    raise SystemExit(settings_table.main(markdown))
