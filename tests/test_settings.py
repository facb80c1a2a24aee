"""One settings model: `sessionflow.config.Settings` reads the environment, and nothing else
does; README.md's Configuration table is generated from it."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from sessionflow.config import (
    COMMAND,
    ConfigError,
    Settings,
    WorkerRole,
    variables,
    with_table,
)

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]
SETTINGS_MODULE = "sessionflow/config.py"
# Code that hands an environment to the processes it starts, copied from its own: not
# configuration. (path, function) -> why.
SPAWN_ENV_COPIES = {
    ("sandbox/isolation.py", "environment"): "a sandboxed command's allow-listed variables",
    ("cli/localstack.py", "server_environment"): "the embedded servers' environment, less OTEL_*",
}
_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def test_the_readme_table_is_the_one_the_settings_make() -> None:
    readme = (REPO / "README.md").read_text()
    assert with_table(readme) == readme, (
        f"README.md's Configuration table is not the one the settings make; run: {COMMAND}"
    )


def _environment_reads(path: Path) -> list[tuple[int, str]]:
    """(line, enclosing function) of each `os.environ`/`os.getenv`/... in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in _ENV_NAMES for alias in node.names)
        ):
            found.append((node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    return found


def test_no_module_but_the_settings_reads_the_environment() -> None:
    reads = []
    allowed_seen = set()
    for folder in sorted(set(PACKAGE_DIRS.values())):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative == SETTINGS_MODULE:
                continue
            for line, function in _environment_reads(path):
                if (relative, function) in SPAWN_ENV_COPIES:
                    allowed_seen.add((relative, function))
                else:
                    reads.append(f"{relative}:{line} (in {function})")
    assert not reads, (
        "the environment is read outside sessionflow/config.py; add a Settings field "
        "instead (or, for an environment copied to a child process, list it in "
        f"SPAWN_ENV_COPIES): {reads}"
    )
    # The allow-list stays honest: an entry whose code is gone goes too.
    assert allowed_seen == set(SPAWN_ENV_COPIES)


def test_the_reader_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom os import getenv\n"
        "def f():\n    return os.environ.get('X'), os.getenv('Y')\n"
    )
    assert _environment_reads(sample) == [(2, "<module>"), (4, "f"), (4, "f")]


def test_every_setting_is_described() -> None:
    undescribed = [n for n, f in Settings.model_fields.items() if not (f.description or "")]
    assert not undescribed


def test_settings_made_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONFLOW_TASK_QUEUE", "from-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    assert Settings().task_queue == "sessionflow"
    assert Settings().anthropic_api_key is None
    assert Settings.from_env().task_queue == "from-env"
    assert Settings.from_env().anthropic_api_key == "sk-ant-from-env"


def test_prefixed_and_standard_names_and_their_fallbacks() -> None:
    settings = Settings.from_env(
        {
            "TEMPORAL_ADDRESS": "temporal:7233",
            "TEMPORAL_NAMESPACE": "prod",
            "REDIS_URL": "redis://:pw@redis:6379/0",
            "SESSIONFLOW_SANDBOX": "e2b",
            "SESSIONFLOW_STREAM_MAXLEN": "50",
            "SESSIONFLOW_WORKER_ROLE": "Activities",
            "SESSIONFLOW_PROVIDERS": " a.b:C , d:E ,",
            "SESSIONFLOW_API_KEYS": "key-of-acme-1:acme",
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "OPENAI_BASE_URL": "http://ollama:11434/v1",
            "E2B_API_KEY": "e2b-key",
        }
    )
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_namespace == "prod"
    assert settings.redis_url == "redis://:pw@redis:6379/0"
    assert settings.sandbox_backend == "e2b"
    assert settings.stream_max_len == 50
    assert settings.worker_role is WorkerRole.ACTIVITIES
    assert settings.providers == ("a.b:C", "d:E")
    assert settings.api_keys == {"key-of-acme-1": "acme"}
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_region == "eu-west-1"
    assert settings.openai_base_url == "http://ollama:11434/v1"
    assert settings.e2b_api_key == "e2b-key"
    # The more specific variable wins over its fallback.
    both = {"AWS_ENDPOINT_URL_S3": "http://s3:1", "AWS_ENDPOINT_URL": "http://other:2"}
    assert Settings.from_env(both).s3_endpoint_url == "http://s3:1"
    assert variables("s3_endpoint_url") == ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    assert variables("stream_max_len") == ("SESSIONFLOW_STREAM_MAXLEN",)


def test_an_empty_variable_is_unset_but_where_empty_means_none(tmp_path: Path) -> None:
    empty = {
        "TEMPORAL_ADDRESS": "",
        "SESSIONFLOW_STREAM_TTL": " ",
        "SESSIONFLOW_DATA_DIR": str(tmp_path),
        "SESSIONFLOW_PAYLOAD_STORE": "",
    }
    settings = Settings.from_env(empty)
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.stream_ttl_seconds == 7 * 24 * 3600
    assert settings.payload_store is None
    assert settings.metrics_next_free
    off = Settings.from_env({"SESSIONFLOW_METRICS_ADDRESS": "", "SESSIONFLOW_TENANT": ""})
    assert off.metrics_address == ""
    assert not off.metrics_next_free
    assert off.tenant is None


def test_values_given_in_code_are_checked_and_named_by_their_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SESSIONFLOW_STREAM_MAXLEN must be a whole number"):
        Settings(stream_max_len=0)
    with pytest.raises(ConfigError, match=r"^TEMPORAL_ADDRESS must be host:port"):
        Settings(temporal_address="localhost")
    with pytest.raises(ConfigError, match=r"^SESSIONFLOW_DATA_DIR: "):
        Settings(data_dir=5)
    with pytest.raises(ConfigError, match=r"^SESSIONFLOW_MAX_LONG_REQUESTS \(900\) must not"):
        Settings(gateway_max_connections=100, max_long_requests=900)


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://:redis-secret@h:6379/0",
            "TEMPORAL_API_KEY": "temporal-secret",
            "SESSIONFLOW_API_KEYS": "gateway-secret:acme",
            "ANTHROPIC_API_KEY": "anthropic-secret",
            "OPENAI_API_KEY": "openai-secret",
            "E2B_API_KEY": "e2b-secret",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
        }
    )
    assert "secret" not in repr(settings)


def test_the_gateway_and_the_worker_are_built_from_the_settings() -> None:
    from sessionflow.gateway.config import GatewayConfig
    from sessionflow.worker.build import WorkerOptions

    assert GatewayConfig.from_settings(Settings()) == GatewayConfig()
    defaults = WorkerOptions.from_settings(Settings())
    assert (defaults.task_queue, defaults.sandbox_root) == (
        WorkerOptions().task_queue,
        WorkerOptions().sandbox_root,
    )
    settings = Settings.from_env(
        {
            "SESSIONFLOW_API_KEYS": "key-of-acme-1:acme",
            "SESSIONFLOW_GATEWAY_PORT": "9000",
            "SESSIONFLOW_SSE_HEARTBEAT": "2.5",
            "SESSIONFLOW_LONG_REQUEST_RESERVE": "0",
            "SESSIONFLOW_TASK_QUEUE": "q",
            "SESSIONFLOW_STREAM_TURN_BUDGET": "0",
            "SESSIONFLOW_DATA_DIR": "/srv/sf",
        }
    )
    gateway = GatewayConfig.from_settings(settings)
    assert gateway.api_keys == {"key-of-acme-1": "acme"}
    assert (gateway.port, gateway.heartbeat_seconds, gateway.long_request_reserve) == (
        9000,
        2.5,
        0,
    )
    worker = WorkerOptions.from_settings(settings)
    assert worker.task_queue == "q"
    assert worker.stream_budget.per_turn_bytes == 0
    assert worker.sandbox_root == Path("/srv/sf/sandboxes")


def test_registered_providers_take_their_keys_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sessionflow.providers.registry import providers_from_settings

    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env:1/v1")
    given = Settings(openai_base_url="http://from-settings:1/v1", anthropic_api_key="sk-ant-x")
    providers = {p.name: p for p in providers_from_settings(given)}
    assert providers["openai"]._api().base_url.host == "from-settings"  # type: ignore[attr-defined]
    assert providers["anthropic"]._api().api_key == "sk-ant-x"  # type: ignore[attr-defined]
    unset = {p.name: p for p in providers_from_settings(Settings())}
    assert unset["openai"]._label == "OpenAI API"  # type: ignore[attr-defined]
