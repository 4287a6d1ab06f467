"""The completion pipeline of every endpoint: check, tag, forward, record.

Chat completions, Responses, embeddings, text completions and Anthropic messages share it; what
differs per endpoint (body checks, redaction, stream framing) is its ``EndpointSpec``.

Order matters and is the contract: everything a client can get wrong is rejected before the
provider is called; a tracked completion is recorded in the rollout store before the client is
told it succeeded (for streams: after the last chunk, before ``[DONE]``), so an insertion id a
client holds is always one ``/traces`` will wait for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from uuid6 import uuid7

from proxy_core.errors import InvalidRequestError, TraceBacklogFullError
from proxy_core.ids import identifier_problem
from proxy_core.request_context import current_request, note_project, valid_traceparent
from proxy_core.services import sse
from proxy_core.services.auth import AuthProvider, Principal
from proxy_core.services.base_url import BaseUrlPolicy
from proxy_core.services.chat_request import ChatRequest, parse_json_body
from proxy_core.services.endpoint_specs import CHAT, EndpointSpec
from proxy_core.services.governance import CallGovernance, Governance
from proxy_core.services.llm import CallInfo, LangfuseTarget, LlmCall, LlmClient
from proxy_core.services.metrics import GatewayMetrics, NoMetrics
from proxy_core.services.models import ModelResolver
from proxy_core.services.observation import CompletionObservation
from proxy_core.services.paths import MetadataPath
from proxy_core.services.preparation import Prepared, RequestPreparer, take_variables
from proxy_core.services.projects import ProjectDirectory, ResolvedProject, authorize
from proxy_core.services.response_cache import ResponseCache
from proxy_core.services.sanitizer import Sanitizer
from proxy_core.services.store import GuardedStore, Usage
from proxy_core.services.streaming import open_stream, relay

NO_PROVIDER_KEY = "no-key"


class TraceBacklog(Protocol):
    """Whether a project's undelivered spans have filled what the gateway can keep."""

    def backlog_full(self, project_id: str) -> bool: ...


class _NoBacklog:
    def backlog_full(self, project_id: str) -> bool:
        return False


NO_BACKLOG = _NoBacklog()


@dataclass(frozen=True, slots=True)
class CompletionPolicy:
    """Per-deployment knobs of the pipeline (from settings)."""

    trace_name: str
    timeout_s: float
    max_retries: int
    drop_params: bool


@dataclass(slots=True)
class CompletionOutcome:
    """Either a JSON body or an SSE byte stream, plus response headers."""

    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


@dataclass(frozen=True, slots=True)
class _Context:
    path: MetadataPath
    project: ResolvedProject
    principal: Principal
    insertion_id: str | None
    governance: CallGovernance
    user_id: str | None
    cache_allowed: bool = True
    traceparent: str | None = None

    @property
    def tracing(self) -> LangfuseTarget | None:
        return self.project.tracing if self.governance.tracing_enabled else None


def _header_id(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    problem = identifier_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"Invalid {name} header: {problem}.", param=name, code="invalid_header")
    return value


class CompletionService:
    def __init__(
        self,
        *,
        llm: LlmClient,
        store: GuardedStore,
        auth: AuthProvider,
        projects: ProjectDirectory,
        models: ModelResolver,
        base_urls: BaseUrlPolicy,
        policy: CompletionPolicy,
        governance: Governance,
        sanitizer: Sanitizer,
        preparer: RequestPreparer,
        cache: ResponseCache,
        backlog: TraceBacklog | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._backlog = backlog or NO_BACKLOG
        self._metrics = metrics or NoMetrics()
        self._cache = cache
        self._preparer = preparer
        self._governance = governance
        self._sanitizer = sanitizer
        self._llm = llm
        self._store = store
        self._auth = auth
        self._projects = projects
        self._models = models
        self._base_urls = base_urls
        self._policy = policy

    async def create(
        self, path: MetadataPath, headers: Mapping[str, str], raw_body: bytes, spec: EndpointSpec = CHAT
    ) -> CompletionOutcome:
        observation = CompletionObservation(self._metrics, path.endpoint.name.lower())
        try:
            principal, project = await authorize(self._auth, self._projects, headers, path.project_id)
            observation.project = project.store_id
            request, prepared, context = await self._understand(path, headers, raw_body, principal, project, spec)
            note_project(project.store_id, context.insertion_id)
            call = await self._build_call(context, request, spec)
            if context.insertion_id is not None:
                self._refuse_if_untraceable(context)
                await self._store.ensure_writable()
            outcome = CompletionOutcome(headers=_outcome_headers(context, prepared))
            await self._respond(context, call, request.stream, outcome, observation, spec)
        except BaseException as error:
            observation.failed(error)
            raise
        if outcome.stream is None:
            observation.succeeded()
        return outcome

    def _refuse_if_untraceable(self, context: _Context) -> None:
        """A rollout-tracked call whose span could not be kept would leave its rollout incomplete
        for good: refuse it before any provider spend instead (untracked calls are served)."""
        if context.tracing is not None and self._backlog.backlog_full(context.tracing.project_id):
            raise TraceBacklogFullError(
                "This project's trace backlog is full (its Langfuse has been unavailable for long); "
                "the completion was not sent. Retry later."
            )

    async def _understand(
        self,
        path: MetadataPath,
        headers: Mapping[str, str],
        raw_body: bytes,
        principal: Principal,
        project: ResolvedProject,
        spec: EndpointSpec,
    ) -> tuple[ChatRequest, Prepared, _Context]:
        """Validate, prepare (experiments, prompts), sanitize, and apply the project's rules."""
        body = parse_json_body(raw_body)
        if spec.managed_prompts:
            variables = take_variables(body)
        elif "x-prompt-name" in headers:
            raise InvalidRequestError(
                "Managed prompts (x-prompt-name) apply to chat completions only.",
                param="x-prompt-name",
                code="prompt_unsupported",
            )
        else:
            variables = {}
        spec.parse(body)  # every client error is a 400 before the sanitizer runs
        session_id = _header_id(headers, "x-session-id")
        header_user = _header_id(headers, "x-user-id")
        raw_user = body.get("user") if isinstance(body.get("user"), str) else None
        unit = session_id or header_user or raw_user or (path.rollout.rollout_id if path.rollout else None)
        prepared = await self._preparer.prepare(project, headers, body, variables, unit)
        redaction = self._sanitizer.for_request(project.store_id)
        request = spec.parse(await redaction.body_of(prepared.body, len(raw_body), spec.redaction))
        request.client_tags.extend(prepared.trace_tags())
        request.client_metadata.update(prepared.trace_metadata())
        context = _Context(
            path=path,
            project=project,
            principal=principal,
            insertion_id=str(uuid7()) if path.rollout is not None else None,
            governance=self._governance.apply(
                project.store_id, headers, request.client_metadata, redaction.text(session_id), redaction.text
            ),
            user_id=redaction.text(header_user) or spec.trace_user(request),
            cache_allowed=not _opts_out_of_cache(headers),
            traceparent=valid_traceparent(headers.get("traceparent")),
        )
        return request, prepared, context

    async def _build_call(self, context: _Context, request: ChatRequest, spec: EndpointSpec) -> LlmCall:
        resolved = self._models.resolve(request.model)
        api_base: str | None = None
        if context.path.encoded_base_url is not None:
            api_base = await self._base_urls.check(context.path.encoded_base_url)
            resolved = resolved.direct()
        deployment_params = dict(resolved.params)
        api_key = context.principal.provider_api_key if not resolved.has_own_key else None
        if api_base is not None:
            # A client-chosen origin never receives a key the server holds.
            deployment_params.pop("api_key", None)
            api_key = context.principal.provider_api_key or NO_PROVIDER_KEY
        return LlmCall(
            model=resolved.litellm_model,
            messages=request.messages,
            params=request.params,
            metadata=self._trace_metadata(context, request),
            deployment_params=deployment_params,
            extra_body=request.extra_body or None,
            api_key=api_key,
            api_base=api_base,
            langfuse=context.tracing,
            langfuse_environment=context.governance.environment,
            timeout_s=self._policy.timeout_s,
            max_retries=self._policy.max_retries,
            drop_params=self._policy.drop_params,
            routed=resolved.routed,
            operation=spec.operation,
            inputs=request.inputs,
        )

    def _trace_metadata(self, context: _Context, request: ChatRequest) -> dict[str, Any]:
        """A fresh LiteLLM ``metadata`` dict: tags, trace name, session, user, trace metadata."""
        governance = context.governance
        tags = list(dict.fromkeys([*request.client_tags, *governance.extra_tags]))
        trace_metadata: dict[str, Any] = dict(request.client_metadata)
        trace_metadata.update(governance.required_metadata)
        if context.project.tracing is not None and context.project.store_id:
            trace_metadata["project_id"] = context.project.store_id
        _add_request_identity(trace_metadata, context.traceparent)
        rollout = context.path.rollout
        if rollout is not None and context.insertion_id is not None:
            ids = {"rollout_id": rollout.rollout_id, "insertion_id": context.insertion_id}
            ids.update(rollout.as_dict())
            tags.extend(f"{key}:{value}" for key, value in ids.items())
            trace_metadata.update(ids)
        metadata: dict[str, Any] = {
            "tags": tags,
            "trace_name": self._policy.trace_name,
            "trace_metadata": trace_metadata,
        }
        if governance.session_id is not None:
            metadata["session_id"] = governance.session_id
        if context.user_id is not None:
            metadata["trace_user_id"] = context.user_id
        return metadata

    async def _record(self, context: _Context, info: CallInfo) -> None:
        rollout = context.path.rollout
        if rollout is not None and context.insertion_id is not None:
            usage = Usage(info.prompt_tokens, info.completion_tokens, info.cost_usd)
            await self._store.record(context.project.store_id, rollout.rollout_id, context.insertion_id, usage)

    async def _respond(
        self,
        context: _Context,
        call: LlmCall,
        stream: bool,
        outcome: CompletionOutcome,
        observation: CompletionObservation,
        spec: EndpointSpec,
    ) -> None:
        if not stream:
            key = await self._cache.lookup(context.project.store_id, call, context.cache_allowed and spec.cached)
            observation.provider_called()
            completion = await self._llm.complete(call)
            observation.provider_answered()
            await self._record(context, completion.info)
            outcome.body = completion.body
            outcome.headers.update(_info_headers(completion.info, with_cost=True))
            if key is not None:
                outcome.headers["x-cache"] = "hit" if call.replay is not None else "miss"
                if call.replay is None:
                    await self._cache.store(context.project.store_id, key, completion.body)
            return
        client_wants_usage = bool((call.params.get("stream_options") or {}).get("include_usage"))
        if spec.asks_stream_usage:
            # Usage (and so cost) of a stream is only reported when asked for: the gateway always asks,
            # and hides the extra chunk from clients that did not.
            call.params["stream_options"] = {**(call.params.get("stream_options") or {}), "include_usage": True}
        observation.provider_called()
        opened = await open_stream(self._llm, call)
        outcome.headers.update(_info_headers(opened.source.info, with_cost=False))
        outcome.headers.update(sse.HEADERS)

        async def on_complete(info: CallInfo) -> None:
            observation.provider_answered()
            await self._record(context, info)
            observation.succeeded()

        outcome.stream = observation.watch(
            relay(
                opened,
                on_complete=on_complete,
                strip_usage=spec.asks_stream_usage and not client_wants_usage,
                on_error=observation.failed_in_band,
                framing=spec.framing,
            )
        )


def _outcome_headers(context: _Context, prepared: Prepared) -> dict[str, str]:
    headers: dict[str, str] = {}
    if context.insertion_id is not None:
        headers["x-insertion-id"] = context.insertion_id
    governance = context.governance
    if governance.session_generated and governance.session_id is not None:
        headers["x-session-id"] = governance.session_id
    variant = prepared.variant_header()
    if variant is not None:
        headers["x-experiment-variant"] = variant
    return headers


def _add_request_identity(trace_metadata: dict[str, Any], traceparent: str | None) -> None:
    """The request's id and its caller's W3C trace position, so logs and the caller's own traces
    can be joined to this trace; the caller's trace never becomes its parent (one trace per call)."""
    request = current_request()
    if request is not None:
        trace_metadata["request_id"] = request.request_id
    if traceparent is not None:
        trace_metadata["traceparent"] = traceparent


def _opts_out_of_cache(headers: Mapping[str, str]) -> bool:
    values = (headers.get("cache-control", ""), headers.get("x-cache", ""))
    return any("no-cache" in value.lower() or "no-store" in value.lower() for value in values)


def _info_headers(info: CallInfo, *, with_cost: bool) -> dict[str, str]:
    headers = {"x-gateway-fallbacks": str(info.fallbacks)}
    if info.deployment:
        headers["x-gateway-deployment"] = info.deployment
    if with_cost and info.cost_usd is not None:
        headers["x-cost-usd"] = f"{info.cost_usd:.8f}"
    return headers
