"""Where a worker serves its Prometheus metrics, beside other workers on the same host.

`SESSIONFLOW_METRICS_ADDRESS` unset means 127.0.0.1:9464, or the next free port after
it when another worker on the host holds it (a second `sessionflow worker` beside
`sessionflow dev`); the address taken is in the worker's start line. A configured
address is used exactly, and a port in use there is an error: a scrape target must
not move silently. Port 0 takes any free port; an empty value turns metrics off.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import structlog
from temporalio.runtime import Runtime

from sessionflow.config import Settings, parse_address
from sessionflow.connections import metrics_runtime
from sessionflow.errors import ConnectionFailed

log = structlog.get_logger(__name__)

# Ports tried after the default one before giving up.
NEXT_FREE_SPAN = 100


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _any_free(host: str) -> Iterator[int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(10):
        # The probe must be closed before its port is offered: yielded from inside the
        # `with`, the port was still held by it, and every candidate was "in use".
        with socket.socket(family) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        yield port


def metrics_endpoint(settings: Settings) -> tuple[Runtime, str] | None:
    """A Temporal runtime serving metrics, and its address; None when metrics are off.

    Raises `ConnectionFailed` with one line when no address can be had.
    """
    if not settings.metrics_address:
        return None
    name = "SESSIONFLOW_METRICS_ADDRESS"
    host, port = parse_address(settings.metrics_address, name, "127.0.0.1:9464")
    if port == 0:
        ports: Iterator[int] = _any_free(host)
    elif settings.metrics_next_free:
        ports = iter(range(port, min(port + NEXT_FREE_SPAN, 65536)))
    else:
        ports = iter([port])
    for candidate in ports:
        address = _join(host, candidate)
        try:
            runtime = metrics_runtime(address)
        except ConnectionFailed as err:
            if "in use" not in str(err):
                raise
            continue
        if port and candidate != port:
            log.info(
                "metrics port taken, using the next free one",
                taken=_join(host, port),
                metrics=f"http://{address}/metrics",
            )
        return runtime, address
    if settings.metrics_next_free:
        raise ConnectionFailed(
            f"no free port for metrics from {_join(host, port)} to "
            f"{_join(host, port + NEXT_FREE_SPAN - 1)}: set {name} to a free host:port, "
            "host:0 for any free one, or empty to turn metrics off"
        )
    raise ConnectionFailed(
        f"{name}={settings.metrics_address}: the port is in use (another worker on this "
        "host?); choose a free port, host:0 for any free one, or empty to turn metrics off"
    )
