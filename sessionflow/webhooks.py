"""Webhooks: what a session's events look like on the wire, how they are signed, and
how a receiver checks them.

A session whose agent names a `webhook_url` (or that was given one of its own) gets a
POST when a turn ends (`turn.finished`), when it waits for an approval
(`approval.requested`) and when it ends (`session.ended`). The body is JSON:

    {"id", "type", "sessionId", "outcome", "assistantMessageId", "usage", "createdAt"}

`id` is the idempotency key: the workflow derives it from the session's workflow id and
the event (`event_id`), so every retry of a delivery, and a replay of the workflow,
carries the same one; it is also the `Sessionflow-Event-Id` header. The signature is
the one payment webhooks use:

    Sessionflow-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">

with the secret of the session's tenant (`SESSIONFLOW_WEBHOOK_SECRETS`), else
`SESSIONFLOW_WEBHOOK_SECRET`. `verify_webhook` checks it, and the timestamp's age, on
the receiving side. Plain functions of their input: safe in workflow code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from sessionflow.contract import WebhookEvent, WebhookEventType
from sessionflow.errors import WebhookSignatureInvalid
from sessionflow.ids import webhook_event_id
from sessionflow.messages import Usage

EVENT_ID_HEADER = "Sessionflow-Event-Id"
SIGNATURE_HEADER = "Sessionflow-Signature"
EVENT_TYPE_HEADER = "Sessionflow-Event-Type"
# How old a signature `verify_webhook` accepts by default (seconds), as payment webhooks do.
DEFAULT_TOLERANCE_SECONDS = 300


def event_id(workflow_id: str, event_type: WebhookEventType, key: str) -> str:
    """The idempotency key of one event (`sessionflow.ids.webhook_event_id`)."""
    return webhook_event_id(workflow_id, event_type.value, key)


def usage_body(usage: Usage) -> dict[str, int]:
    """Token counts in the gateway's camelCase words."""
    return {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "cacheReadTokens": usage.cache_read_tokens,
        "cacheWriteTokens": usage.cache_write_tokens,
        "totalTokens": usage.total_tokens,
    }


def event_body(event: WebhookEvent) -> bytes:
    """The exact bytes POSTed (and signed) for `event`: the same for every attempt."""
    body = {
        "id": event.id,
        "type": event.type.value,
        "sessionId": event.session_id,
        "outcome": event.outcome,
        "assistantMessageId": event.assistant_message_id,
        "usage": usage_body(event.usage),
        "createdAt": event.created_at,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Sessionflow-Signature` value for `body`, signed now (or at `timestamp`)."""
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},v1={signature(secret, body, when)}"


def verify_webhook(
    body: bytes | str,
    signature_or_headers: str | Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request from Sessionflow and return its event (the parsed body).

    Args:
        body: the request body exactly as received (bytes, or text as sent).
        signature_or_headers: the `Sessionflow-Signature` header's value, or the request's
            headers (any mapping; the name is matched without regard to case).
        secret: the secret the sender signs with (the tenant's, or the default).
        tolerance: the oldest signature accepted, in seconds (and as far in the future,
            for clock skew); 0 or less accepts any age.
        now: the current unix time (for tests).

    Raises:
        WebhookSignatureInvalid: no or malformed header, no `v1` signature that matches
            (a changed body, another secret), or a timestamp outside the tolerance (a
            replayed request).
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    header = _header(signature_or_headers)
    timestamp, signatures = _parse(header)
    expected = signature(secret, raw, timestamp)
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookSignatureInvalid("the webhook's signature does not match its body")
    current = time.time() if now is None else now
    if tolerance > 0 and abs(current - timestamp) > tolerance:
        raise WebhookSignatureInvalid(
            f"the webhook was signed {current - timestamp:.0f} s ago, more than the "
            f"{tolerance:g} s allowed"
        )
    try:
        event: dict[str, Any] = json.loads(raw)
    except ValueError:
        raise WebhookSignatureInvalid("the webhook's body is not JSON") from None
    return event


def _header(value: str | Mapping[str, str]) -> str:
    if isinstance(value, str):
        return value
    wanted = SIGNATURE_HEADER.lower()
    for name, given in value.items():
        if name.lower() == wanted:
            return given
    raise WebhookSignatureInvalid(f"no {SIGNATURE_HEADER} header")


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureInvalid(f"malformed {SIGNATURE_HEADER} header") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureInvalid(f"malformed {SIGNATURE_HEADER} header: need t= and v1=")
    return timestamp, signatures


MAX_URL_LENGTH = 2048


def check_webhook_url(url: str, *, allow_empty: bool = False) -> str:
    """A webhook URL as given, if it can be one: absolute `http(s)://host...`, at most
    2048 characters, no credentials or whitespace. Where it points is checked when it
    is called (the worker refuses private addresses then), not here.

    Raises:
        InvalidInput: naming what is wrong (never echoing more than the scheme).
    """
    from urllib.parse import urlsplit

    from sessionflow.errors import InvalidInput

    if allow_empty and url == "":
        return url
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"a webhook URL must be 1-{MAX_URL_LENGTH} characters of text")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidInput("a webhook URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises)
    except ValueError:
        raise InvalidInput("a webhook URL must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("a webhook URL must not carry credentials")
    return url
