"""structlog setup: readable in a terminal, JSON lines in production, no credentials.

The Temporal SDK logs through the standard library; its records are rendered by
the same processors so one process writes one format.

Every line passes through the redaction here before it is written: values under
credential-looking keys (`password`, `secret`, `token`, `api_key`, `authorization`,
...), the password in a URL's userinfo (`redis://:secret@host` -> `redis://:***@host`),
`Bearer` tokens, `key=value` pairs with such keys, and every secret registered with
`remember_secret` (the Temporal API key, the Redis password, the gateway's API keys)
wherever it appears, tracebacks included (rendered as plain text, without locals).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

REDACTED = "***"

# Keys whose values are credentials. Numbers under them stay (`tokens=812` counts tokens).
_SECRET_KEY = re.compile(
    r"password|passwd|secret|api[_-]?key|token|credential|private[_-]?key|authorization|cookie",
    re.IGNORECASE,
)
# scheme://userinfo@ — greedy up to the authority's last `@`, so an unescaped `@` in a
# password does not leave its tail behind.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
_BEARER = re.compile(r"(?P<kind>\b(?:Bearer|Basic)\s+)[^\s'\",;]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|secret|api[_-]?key|token)[\w.-]*)"
    # `key=value`, or a quoted key before a colon (the repr of a dict, JSON).
    r"(?P<sep>=|['\"]\s*:\s*)(?P<quote>['\"]?)(?P<value>[^\s&;,'\"]+)",
    re.IGNORECASE,
)
# Rendered by the renderer itself, whose output `_Redacted` checks.
_RENDERED_LATER = frozenset({"exc_info", "stack_info"})
# Secrets known by value (too short ones would redact ordinary words).
_KNOWN: set[str] = set()
_MIN_KNOWN = 6


def remember_secret(*values: str | None) -> None:
    """Redact these values wherever they appear in a log line from now on."""
    for value in values:
        if value and len(value) >= _MIN_KNOWN:
            _KNOWN.add(value)


def remember_url_password(url: str) -> None:
    """Register the password in a URL's userinfo (`redis://:secret@host`), if any."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        remember_secret(password, unquote(password))


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_url(url: str) -> str:
    """`url` without the password (or a bare token) in its userinfo."""
    return _URL_USERINFO.sub(_hide_userinfo, url)


def _hide_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # `user:password` keeps the user; a lone `token@` (git, some APIs) is all secret.
    shown = f"{user}:{REDACTED}" if colon else REDACTED
    return f"{match['scheme']}{shown}@"


def _hide_value(match: re.Match[str]) -> str:
    if match["value"].isdigit():  # max_tokens=8192: a count, not a credential
        return match[0]
    return f"{match['key']}{match['sep']}{match['quote']}{REDACTED}"


def redact_text(text: str) -> str:
    """`text` with URL passwords, bearer tokens, `key=value` credentials and every
    remembered secret replaced by `***`."""
    for secret in sorted(_KNOWN, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(_hide_userinfo, text)
    text = _BEARER.sub(lambda m: f"{m['kind']}{REDACTED}", text)
    return _KEY_VALUE.sub(_hide_value, text)


def _redact_known(text: str) -> str:
    """The pass over a rendered line: what can be found without knowing the keys."""
    for secret in sorted(_KNOWN, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(_hide_userinfo, text)
    return _BEARER.sub(lambda m: f"{m['kind']}{REDACTED}", text)


def redact_value(value: Any, key: object = None) -> Any:
    """`value` with credentials hidden: everything under a secret-looking key, and
    credentials inside strings; containers are walked, other objects become their
    redacted `repr` (what the renderers would print for them anyway)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    return redact_text(repr(value))


def redact_credentials(
    _logger: Any, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The structlog processor: `redact_value` over every field of the event."""
    return {
        key: value if key in _RENDERED_LATER or key.startswith("_") else redact_value(value, key)
        for key, value in event_dict.items()
    }


class _Redacted:
    """A renderer whose output passes through `_redact_known` (the last safety net:
    tracebacks and anything a renderer formats itself)."""

    def __init__(self, renderer: structlog.typing.Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: structlog.typing.EventDict) -> Any:
        rendered = self._renderer(logger, method, event_dict)
        if isinstance(rendered, str):
            return _redact_known(rendered)
        if isinstance(rendered, bytes):
            return _redact_known(rendered.decode("utf-8", "replace")).encode()
        return rendered


# The Temporal SDK logs every update a workflow refuses, at debug, with a traceback.
_UPDATE_LOGGER = "temporalio.worker._workflow_instance"
_UPDATE_REFUSED = "Update raised failure"


class _RefusedUpdates(logging.Filter):
    """An update refused on purpose is an answer, not a fault: a validator raising one of
    Sessionflow's errors (an approval no longer pending, a message the session lacks)
    is logged as one line naming the error, without the SDK's traceback. Anything else
    a handler raises keeps its traceback: that is a bug to read."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == _UPDATE_LOGGER
            and record.exc_info
            and str(record.msg).startswith(_UPDATE_REFUSED)
        ):
            from temporalio.exceptions import ApplicationError

            from sessionflow.errors import by_type

            err = record.exc_info[1]
            if isinstance(err, ApplicationError) and by_type(err.type) is not None:
                record.msg = f"{record.getMessage()}: {err.type}: {err.message}"
                record.args = None
                record.exc_info = None
                record.exc_text = None
        return True


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Configure structlog and stdlib logging; `fmt` is "json", "console" or None (auto)."""
    use_json = fmt == "json" or (fmt is None and not sys.stderr.isatty())
    # Tracebacks are rendered into the `exception` field as plain text, before the
    # redaction: rich's (the console's default) show each frame's locals and break up
    # URLs with colours, past what a redaction could recognise.
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_credentials,
                _Redacted(renderer),
            ],
        )
    )
    handler.addFilter(_RefusedUpdates())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
