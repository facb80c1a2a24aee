"""docker-compose.yml and the Dockerfile, checked without Docker (none runs here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# Every folder that installs as part of `sessionflow` (pyproject's package-dir).
SOURCE_PACKAGES = sorted(
    set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-dir"
        ].values()
    )
)


def source_text() -> str:
    return "\n".join(
        path.read_text() for package in SOURCE_PACKAGES for path in (REPO / package).rglob("*.py")
    )


def test_compose_file_parses_and_runs_the_whole_stack() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgresql", "temporal", "temporal-ui", "redis", "worker", "gateway"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["worker"]["command"] == ["sessionflow", "worker"]
    assert services["gateway"]["command"] == ["sessionflow", "gateway"]
    from sessionflow.workflows.search import REGISTRATION

    setup = services["temporal-setup"]["command"][0]
    for name, kind in REGISTRATION.items():
        assert f"--name {name} --type {kind}" in setup


def settings_variables() -> set[str]:
    """Every variable `Settings` reads (the only reader of the environment)."""
    from sessionflow.config import Settings, variables

    return {name for field in Settings.model_fields for name in variables(field)}


def test_every_variable_compose_sets_for_sessionflow_is_one_the_settings_read() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    read = settings_variables()
    readme = (REPO / "README.md").read_text()
    for name in ("worker", "gateway"):
        for variable in compose["services"][name]["environment"]:
            assert variable in read, f"{name} sets {variable}, which the settings do not read"
            assert f"`{variable}`" in readme, f"{variable} is not documented"


def test_every_variable_the_settings_read_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    quoted = set(re.findall(r'"((?:SESSIONFLOW|TEMPORAL|REDIS)_[A-Z_]+)"', source_text()))
    names = settings_variables() | quoted
    assert len(names) > 60
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"undocumented settings: {missing}"


def test_the_image_contains_every_package() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in SOURCE_PACKAGES:
        assert f"COPY {package} ./{package}" in dockerfile, package


def test_compose_publishes_only_the_gateway_and_redis_needs_a_password() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    # Neither Redis nor Temporal (no authentication) is reachable from outside.
    for name in ("redis", "temporal", "postgresql"):
        assert not services[name].get("ports"), f"{name} is published"
        assert not services[name].get("network_mode"), f"{name} shares the host's network"
    published = {name for name, service in services.items() if service.get("ports")}
    assert published <= {"gateway", "temporal-ui"}, published
    assert services["gateway"]["ports"] == ["8000:8000"]
    # The UI, if published at all, listens on the host's loopback only.
    for port in services["temporal-ui"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port

    # Redis requires a password that `docker compose` refuses to start without ...
    command = services["redis"]["command"]
    assert "--requirepass" in command
    password = command[command.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{SESSIONFLOW_REDIS_PASSWORD:\?[^}]+\}", password), password
    # ... and the worker and the gateway connect with it.
    for name in ("worker", "gateway"):
        url = services[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${SESSIONFLOW_REDIS_PASSWORD:?"), url
        assert url.endswith("}@redis:6379/0"), url
