"""Delivering a webhook: one signed POST per attempt, retried by Temporal until the
receiver answers 2xx (`workflows.webhook_delivery`).

The URL comes from an agent's author or a tenant's API call, so it is treated as an
attacker's: it may name, or resolve to, the worker's own loopback, the cloud metadata
address or a private network (server-side request forgery). Unless the worker allows
private targets (SESSIONFLOW_WEBHOOK_ALLOW_PRIVATE), the host is resolved and *every*
address it resolves to must be public; the request then goes to the address that was
checked (the hostname kept in `Host` and TLS SNI), so a second resolution cannot swap
in another one (DNS rebinding). Redirects are followed by hand, each hop checked the
same way.

Each attempt signs the same body anew (`Sessionflow-Signature: t=<now>,v1=...`); the
event's `id` never changes, so a receiver deduplicates on it. The activity picks its
own pause before the next attempt (doubling from 1 s up to
SESSIONFLOW_WEBHOOK_MAX_RETRY_INTERVAL), and gives up once the event is older than
SESSIONFLOW_WEBHOOK_RETRY_FOR.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from sessionflow.contract import ActivityName, WebhookDelivery
from sessionflow.errors import WebhookRefused
from sessionflow.ids import tenant_of
from sessionflow.webhooks import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    check_webhook_url,
    event_body,
    signature_header,
)

log = structlog.get_logger(__name__)

MAX_REDIRECTS = 5
USER_AGENT = "Sessionflow-Webhooks/1"


@dataclass(frozen=True)
class WebhookConfig:
    """The worker's webhook settings (`Settings.webhook_*`)."""

    secret: str | None = field(default=None, repr=False)
    tenant_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    allow_private: bool = False
    timeout_seconds: float = 10.0
    max_retry_interval_seconds: float = 300.0
    retry_for_seconds: float = 3 * 24 * 3600.0

    def secret_for(self, session_id: str) -> str | None:
        """The session's tenant's secret, else the default one."""
        return self.tenant_secrets.get(tenant_of(session_id)) or self.secret


def is_public(address: str) -> bool:
    """Whether an IP address is one a webhook may reach without ALLOW_PRIVATE: not
    private, loopback, link-local (cloud metadata), shared, reserved, multicast or
    unspecified, IPv4 mapped into IPv6 included."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal address is itself)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def checked_target(url: httpx.URL, allow_private: bool) -> str:
    """The address to connect to for `url`: refused (`WebhookRefused`) when any address
    its host resolves to is not public and private targets are not allowed."""
    if url.scheme not in ("http", "https") or not url.host:
        raise WebhookRefused("a webhook URL must be http:// or https://")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve(url.host, port)
    except OSError as err:
        raise ConnectionError(f"cannot resolve {url.host!r}: {err}") from err
    if not addresses:
        raise ConnectionError(f"{url.host!r} resolves to no address")
    if not allow_private:
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise WebhookRefused(
                f"webhook host {url.host!r} resolves to a private, loopback or link-local "
                f"address ({', '.join(private)}); set SESSIONFLOW_WEBHOOK_ALLOW_PRIVATE=1 "
                "to allow it"
            )
    return addresses[0]


async def post_pinned(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
) -> httpx.Response:
    """POST `body` to `url` through the address that was checked, following up to
    `MAX_REDIRECTS` redirects (each POSTs the same body, each target checked)."""
    target = httpx.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        address = await checked_target(target, allow_private)
        pinned = target.copy_with(host=address)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        response = await http.post(
            pinned,
            content=body,
            headers={**headers, "Host": target.netloc.decode("ascii")},
            extensions=extensions,
        )
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            return response
        await response.aclose()
        target = target.join(location)
    raise WebhookRefused(f"more than {MAX_REDIRECTS} redirects")


@dataclass
class WebhookActivities:
    config: WebhookConfig
    # Injected for tests (a transport of their own); one client per attempt otherwise.
    transport: httpx.AsyncBaseTransport | None = None

    @activity.defn(name=ActivityName.DELIVER_WEBHOOK)
    async def deliver_webhook(self, delivery: WebhookDelivery) -> int:
        """POST the event once; raise to have Temporal try again after the pause this
        picks. Returns the receiver's 2xx status."""
        event = delivery.event
        attempt = activity.info().attempt
        fields = {
            "event_id": event.id,
            "event_type": event.type.value,
            "session_id": delivery.session_id,
            "host": httpx.URL(delivery.url).host,
            "attempt": attempt,
        }
        self._give_up_if_old(delivery)
        secret = self.config.secret_for(delivery.session_id)
        try:
            check_webhook_url(delivery.url)
            if secret is None:
                raise WebhookRefused(
                    f"no webhook secret for tenant {tenant_of(delivery.session_id)!r}: set "
                    "SESSIONFLOW_WEBHOOK_SECRET (or the tenant's in SESSIONFLOW_WEBHOOK_SECRETS)"
                )
            body = event_body(event)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                EVENT_ID_HEADER: event.id,
                EVENT_TYPE_HEADER: event.type.value,
                SIGNATURE_HEADER: signature_header(secret, body),
            }
            async with httpx.AsyncClient(
                timeout=self.config.timeout_seconds,
                follow_redirects=False,
                trust_env=False,
                transport=self.transport,
            ) as http:
                response = await post_pinned(
                    http, delivery.url, body, headers, allow_private=self.config.allow_private
                )
        except WebhookRefused as err:
            log.warning("webhook refused", reason=str(err), **fields)
            raise ApplicationError(
                str(err), type=WebhookRefused.__name__, non_retryable=True
            ) from None
        except (httpx.HTTPError, ConnectionError, OSError) as err:
            log.warning("webhook attempt failed", error=type(err).__name__, **fields)
            raise self._retry(f"webhook not delivered: {type(err).__name__}: {err}") from None
        if response.is_success:
            log.info("webhook delivered", status=response.status_code, **fields)
            return response.status_code
        log.warning("webhook answered with an error", status=response.status_code, **fields)
        raise self._retry(f"webhook receiver answered {response.status_code}")

    def _retry(self, message: str) -> ApplicationError:
        attempt = activity.info().attempt
        pause = min(2.0 ** min(attempt - 1, 30), self.config.max_retry_interval_seconds)
        return ApplicationError(
            message, type="WebhookNotDelivered", next_retry_delay=timedelta(seconds=pause)
        )

    def _give_up_if_old(self, delivery: WebhookDelivery) -> None:
        created = datetime.fromisoformat(delivery.event.created_at.replace("Z", "+00:00"))
        age = (datetime.now(UTC) - created).total_seconds()
        if age > self.config.retry_for_seconds:
            raise ApplicationError(
                f"gave up on webhook {delivery.event.id}: not delivered within "
                f"{self.config.retry_for_seconds:g} s (SESSIONFLOW_WEBHOOK_RETRY_FOR)",
                type="WebhookNotDelivered",
                non_retryable=True,
            )
