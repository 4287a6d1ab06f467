"""In-process fakes of the gateway's external services, for tests and benchmarks.

* :mod:`.server` – :class:`ServerThread` runs any ASGI app on a free local port.
* :mod:`.upstream` – a fake OpenAI-compatible provider, steerable per request.
* :mod:`.langfuse` – a Langfuse server emulator (OTLP ingestion + read APIs).
"""

from .langfuse import FakeLangfuse, LangfuseApp, create_langfuse_app
from .langfuse_otlp import SpanRecord
from .langfuse_state import LangfuseState, LoggedRequest
from .server import ServerThread
from .upstream import FakeUpstream, RecordedRequest, UpstreamApp, UpstreamState, create_upstream_app

__all__ = [
    "FakeLangfuse",
    "FakeUpstream",
    "LangfuseApp",
    "LangfuseState",
    "LoggedRequest",
    "RecordedRequest",
    "ServerThread",
    "SpanRecord",
    "UpstreamApp",
    "UpstreamState",
    "create_langfuse_app",
    "create_upstream_app",
]
