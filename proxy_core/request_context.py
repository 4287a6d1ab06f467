"""What the gateway knows about the request being served, for every log line written on its behalf.

The HTTP layer opens a ``RequestContext`` per request (its id, the route template) and services
fill in what they learn (the project, the insertion id). It lives in a context variable, so log
records written anywhere below the request — an error handler, a service, uvicorn's access log —
can carry it without being handed it. The context object itself is mutable and shared: a task the
request starts (a stream's relay, a cancellable handler) sees the same object, and what it adds
shows in the lines the request writes afterwards.

Also here, because they are checks of what a client sends: which inbound ``x-request-id`` values
are echoed, and which W3C ``traceparent`` headers are recorded.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
# Echoed as sent when it looks like an id: a UUID, or up to 128 letters, digits and ``._:-``.
# Anything else (too long, spaces, quotes, control characters) could forge or break log lines.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# W3C Trace Context, level 1: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


@dataclass(slots=True)
class RequestContext:
    """One request's identity in the logs; fields other than the id are None until known."""

    request_id: str
    route: str | None = None
    project: str | None = None
    insertion_id: str | None = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("proxy_core_request", default=None)


def current_request() -> RequestContext | None:
    """The context of the request this code runs for, None outside any request."""
    return _CURRENT.get()


def enter_request(request_id: str) -> tuple[RequestContext, object]:
    """Open a request's context; pass the returned token to ``leave_request`` when it is over."""
    context = RequestContext(request_id)
    return context, _CURRENT.set(context)


def leave_request(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def note_project(project: str, insertion_id: str | None) -> None:
    """Record the request's project and insertion id (no-op outside a request)."""
    context = _CURRENT.get()
    if context is not None:
        context.project = project
        context.insertion_id = insertion_id


def valid_request_id(value: str | None) -> str | None:
    """``value`` if it may be echoed as the request's id, else None (a new one is made)."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    """A random (version 4) UUID, from ``random``'s generator rather than ``uuid.uuid4``'s.

    ``uuid4`` reads ``os.urandom``, which releases the GIL for its system call; in a busy worker
    whose other threads (LiteLLM's pool, the span exporter) take it meanwhile, every request then
    waits out a thread switch. A request id needs to be unique, not unpredictable.
    """
    value = f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a W3C ``traceparent`` a tracing system would accept, else None.

    Version ``ff`` is forbidden, an all-zero trace or parent id is invalid, and version ``00``
    has exactly four fields; later versions may append fields (the spec's forward compatibility).
    """
    if value is None:
        return None
    value = value.strip()
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    if version == "00" and rest is not None:
        return None
    return value if len(value) <= 512 else None
