"""Parsing evaluation metadata out of request paths.

Clients put evaluation ids into their ``base_url`` and the OpenAI SDK appends ``/chat/completions``,
so the metadata arrives as path segments:

    [/v1][/project_id/{p}][/rollout_id/{r}/invocation_id/{i}/experiment_id/{e}/run_id/{run}/row_id/{row}
        [/encoded_base_url/{b64}]][/v1]/chat/completions

and likewise for the other tracked endpoints (``/responses``, ``/embeddings``, ``/completions``,
``/messages``).

The other routes (``traces``, ``rollouts/{id}``, ``scores``, ``logs``, ``status``) take the same
optional ``/v1`` and ``/project_id/{p}`` prefixes, without the rollout ids.

The raw (still percent-encoded) path is parsed segment by segment, so an encoded ``/`` inside an
id is reported as a bad id instead of silently shifting every later segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote_to_bytes

from proxy_core.errors import InvalidRequestError
from proxy_core.ids import validate_identifier

ROLLOUT_KEYS = ("rollout_id", "invocation_id", "experiment_id", "run_id", "row_id")
MAX_ENCODED_BASE_URL_LENGTH = 4096


class Endpoint(Enum):
    CHAT_COMPLETIONS = ("chat", "completions")
    RESPONSES = ("responses",)
    EMBEDDINGS = ("embeddings",)
    TEXT_COMPLETIONS = ("completions",)
    MESSAGES = ("messages",)
    TRACES = ("traces",)
    TRACES_POINTWISE = ("traces", "pointwise")
    ROLLOUT_STATUS = ("rollouts", "{rollout_id}")
    SCORES = ("scores",)
    LOGS = ("logs",)
    STATUS = ("status",)


# The endpoints that call a provider: each may be rollout-tracked, on every prefix chat has.
TRACKED_ENDPOINTS = frozenset(
    {Endpoint.CHAT_COMPLETIONS, Endpoint.RESPONSES, Endpoint.EMBEDDINGS, Endpoint.TEXT_COMPLETIONS, Endpoint.MESSAGES}
)


@dataclass(frozen=True, slots=True)
class RolloutIds:
    """The five ids that place a completion inside an evaluation."""

    rollout_id: str
    invocation_id: str
    experiment_id: str
    run_id: str
    row_id: str

    def as_dict(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in ROLLOUT_KEYS}


@dataclass(frozen=True, slots=True)
class MetadataPath:
    """What a request path says: the endpoint, the project and (for tracked calls) the rollout."""

    endpoint: Endpoint
    project_id: str | None = None
    rollout: RolloutIds | None = None
    encoded_base_url: str | None = None
    resource_id: str | None = None


def _decode_segment(raw: str, name: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(
            f"Invalid {name}: not valid UTF-8 after percent-decoding.", param=name, code="invalid_identifier"
        ) from None


def _take_pair(segments: list[str], index: int, key: str) -> tuple[str | None, int]:
    """If ``segments[index]`` is ``key``, return its decoded value and the next index."""
    if index < len(segments) and segments[index] == key:
        if index + 1 >= len(segments):
            raise InvalidRequestError(f"Invalid {key}: must not be empty.", param=key, code="invalid_identifier")
        return _decode_segment(segments[index + 1], key), index + 2
    return None, index


def _match_endpoint(tail: list[str]) -> tuple[Endpoint, str | None] | None:
    """The endpoint a path tail names, and the decoded id of a ``{placeholder}`` segment."""
    if tail and tail[0] == "v1":
        tail = tail[1:]
    for endpoint in Endpoint:
        pattern = endpoint.value
        if len(tail) != len(pattern):
            continue
        resource_id = None
        for segment, expected in zip(tail, pattern, strict=True):
            if expected.startswith("{"):
                name = expected.strip("{}")
                resource_id = validate_identifier(_decode_segment(segment, name), name)
            elif segment != expected:
                break
        else:
            return endpoint, resource_id
    return None


def _parse_rollout(segments: list[str], index: int) -> tuple[RolloutIds | None, int]:
    if index >= len(segments) or segments[index] != ROLLOUT_KEYS[0]:
        return None, index
    values: list[str] = []
    for key in ROLLOUT_KEYS:
        value, index = _take_pair(segments, index, key)
        if value is None:
            return None, -1
        values.append(validate_identifier(value, key))
    return RolloutIds(*values), index


def parse_metadata_path(raw_path: str) -> MetadataPath | None:
    """Parse a raw request path; None when it is not one of the gateway's metadata routes.

    Raises ``InvalidRequestError`` (400, naming the segment) when the shape matches but an id
    is empty, too long, or contains ``/``, ``,``, whitespace or control characters.
    """
    segments = raw_path.strip("/").split("/") if raw_path.strip("/") else []
    index = 1 if segments[:1] == ["v1"] else 0
    project_id, index = _take_pair(segments, index, "project_id")
    if project_id is not None:
        validate_identifier(project_id, "project_id")
    rollout, index = _parse_rollout(segments, index)
    if index < 0:
        return None
    encoded_base_url = None
    if rollout is not None:
        encoded_base_url, index = _take_pair(segments, index, "encoded_base_url")
        if encoded_base_url is not None and not 0 < len(encoded_base_url) <= MAX_ENCODED_BASE_URL_LENGTH:
            raise InvalidRequestError(
                "Invalid encoded_base_url: empty or too long.", param="encoded_base_url", code="invalid_base_url"
            )
    matched = _match_endpoint(segments[index:])
    if matched is None:
        return None
    endpoint, resource_id = matched
    if endpoint not in TRACKED_ENDPOINTS and rollout is not None:
        return None
    return MetadataPath(endpoint, project_id, rollout, encoded_base_url, resource_id)
