"""Durable delivery of trace spans: none is lost while a project's Langfuse is away.

A completion's span is its part of the rollout's record: ``/traces`` waits for it, so a span
that never arrives leaves the rollout incomplete until its keys expire. Delivery therefore never
drops a span it could keep:

* Spans are posted live, in batches bounded in bytes and in count. A batch the intake cannot take
  now (5xx, 429, 408, refused, timed out) goes to the spool, and the project counts as down:
  until it answers again its new spans go straight to the spool, in order.
* The spool is replayed, oldest first, with jittered backoff (``Retry-After`` honoured), as soon
  as the project's Langfuse answers again. With Redis the spool is shared: any replica replays
  any replica's spans, and a claimed batch is only leased, so a replica that dies mid-replay
  leaves it to the others. Langfuse upserts observations by span id, so a span sent twice (a
  lease that ran out while its post was slow) is stored once.
* A batch refused as too large (413) is split in halves until each part passes; a single span
  that still does not pass is sent with its longest values cut (marked as cut), not lost.
  Spans bigger than a whole batch are cut before they are sent.
* The spool is bounded in bytes. When it is full, what does not fit is dropped, counted and
  logged, and ``backlog_full`` tells the completions service to refuse new rollout-tracked calls
  (503 ``trace_backlog_full``) rather than spend tokens on a rollout that can never be complete.
* At shutdown, what could not be delivered in time is spooled (with Redis) or counted as lost.

Every outcome is counted per project (``report``): queued, exported, spooled, replayed, dropped,
rejected, truncated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proxy_core.errors import StoreUnavailableError
from proxy_core.services.background import cancel_and_wait
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.metrics import GatewayMetrics, NoMetrics
from proxy_core.services.trace_ports import (
    IntakeRejectedError,
    IntakeTooLargeError,
    IntakeUnavailableError,
    SpanCodec,
    SpanSpool,
    SpoolDepth,
    TraceIntake,
)
from proxy_core.services.trace_projects import (
    COUNTS,
    DeliveryItem,
    DeliveryTuning,
    PostOutcome,
    ProjectDelivery,
)

logger = logging.getLogger("proxy_core.tracing")


class TraceDelivery:
    """Delivers each project's span fragments (module docstring). Runs on the event loop."""

    def __init__(
        self,
        *,
        targets: Callable[[], Mapping[str, LangfuseTarget]],
        intake: TraceIntake,
        spool: SpanSpool,
        codec: SpanCodec,
        tuning: DeliveryTuning | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """``targets``: each project's current destination (read anew, so rotated keys apply)."""
        self._metrics = metrics or NoMetrics()
        self._targets = targets
        self._intake = intake
        self._spool = spool
        self._codec = codec
        self._tuning = tuning or DeliveryTuning()
        self._projects: dict[str, ProjectDelivery] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._spooling: set[asyncio.Task[None]] = set()  # overflow pushes, referenced until done
        self._stopping = False

    def start(self) -> None:
        """Begin replaying spooled spans (from the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._replayer = asyncio.create_task(self._replay_forever(), name="trace-replay")

    def _project(self, project_id: str) -> ProjectDelivery:
        project = self._projects.get(project_id)
        if project is None:
            project = self._projects[project_id] = ProjectDelivery(project_id)
        return project

    def _count(self, project: ProjectDelivery, outcome: str, spans: int) -> None:
        project.counts[outcome] += spans
        self._metrics.spans(project.id, outcome, spans)

    def _set_depth(self, project: ProjectDelivery, depth: SpoolDepth) -> None:
        if depth.spans != project.depth.spans:
            self._metrics.spool_depth(project.id, depth.spans)
        project.depth = depth

    def backlog_full(self, project_id: str) -> bool:
        """Whether the project's spool is full: a new span of it could not be kept."""
        project = self._projects.get(project_id)
        return project is not None and project.full

    def report(self) -> dict[str, Any]:
        return {
            "spool": {"durable": self._spool.durable, "max_bytes": self._spool.max_bytes},
            "projects": {project_id: project.report() for project_id, project in sorted(self._projects.items())},
        }

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTS, 0)
        for project in self._projects.values():
            for name, count in project.counts.items():
                totals[name] += count
        return totals

    # Taking spans in -------------------------------------------------------------------------

    def submit_threadsafe(self, project_id: str, fragments: Sequence[bytes]) -> bool:
        """``submit`` from an exporter thread; False when the event loop is gone (the spans are lost)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self.submit, project_id, list(fragments))
        except RuntimeError:  # closed between the check and the call
            return False
        return True

    def submit(self, project_id: str, fragments: Sequence[bytes]) -> None:
        project = self._project(project_id)
        self._count(project, "queued", len(fragments))
        for fragment in fragments:
            fitted = self._fit(project, fragment)
            project.pending.append(fitted)
            project.pending_bytes += len(fitted)
        if project.pending_bytes > self._tuning.max_pending_bytes:
            overflow = project.take(project.pending_bytes - self._tuning.max_pending_bytes)
            task = asyncio.create_task(self._spool_fragments(project, overflow))
            self._spooling.add(task)
            task.add_done_callback(self._spooling.discard)
        if project.sender is None or project.sender.done():
            project.sender = asyncio.create_task(self._send_pending(project), name=f"trace-send-{project_id}")

    def _fit(self, project: ProjectDelivery, fragment: bytes) -> bytes:
        """A span no batch could hold is cut until it fits (rare: megabytes of input or output)."""
        fitted: bytes | None = fragment
        while fitted is not None and len(fitted) > self._tuning.max_batch_bytes:
            fragment = fitted
            fitted = self._codec.shrink(fragment)
        if fitted is None:
            return fragment  # nothing left to cut: let the intake decide
        if fitted is not fragment or len(fitted) != len(fragment):
            self._count(project, "truncated", 1)
        return fitted

    # Live delivery ---------------------------------------------------------------------------

    async def _send_pending(self, project: ProjectDelivery) -> None:
        tuning = self._tuning
        while project.pending:
            batch = project.inflight = project.take(tuning.max_batch_bytes, tuning.max_batch_spans)
            target = self._targets().get(project.id)
            if target is None:
                self._drop(project, len(batch), "its project is no longer configured")
            elif project.down:
                await self._spool_fragments(project, batch)
            else:
                outcome = await self._post_all(project, target, [DeliveryItem(f) for f in batch], tuning.live_timeout_s)
                self._count(project, "exported", len(outcome.delivered))
                if outcome.unavailable:
                    await self._spool_fragments(project, [item.fragment for item in outcome.unavailable])
            project.inflight = []

    async def _post_all(
        self, project: ProjectDelivery, target: LangfuseTarget, items: list[DeliveryItem], timeout_s: float
    ) -> PostOutcome:
        """Post ``items``, splitting on 413 and cutting a lone span that is still too large.

        Stops at the first sign of unavailability: the rest is returned as ``unavailable``.
        """
        outcome = PostOutcome()
        stack = [items]
        while stack:
            part = stack.pop()
            try:
                await self._intake.post(target, self._codec.body([i.fragment for i in part]), timeout_s=timeout_s)
            except IntakeTooLargeError:
                stack.extend(self._smaller(project, part, outcome))
                continue
            except IntakeRejectedError as error:
                logger.error("Langfuse of project %r rejected %d spans for good: %s", project.id, len(part), error)
                self._count(project, "rejected", len(part))
                outcome.rejected += part
                continue
            except Exception as error:  # unavailable, or a failure nobody foresaw: keep the spans
                if not isinstance(error, IntakeUnavailableError):
                    logger.exception("posting spans of project %r failed unexpectedly; they are spooled", project.id)
                    error = IntakeUnavailableError(type(error).__name__)
                project.unavailable(error, self._tuning)
                outcome.unavailable = part + [item for rest in reversed(stack) for item in rest]
                return outcome
            project.available()
            outcome.delivered += part
        return outcome

    def _smaller(
        self, project: ProjectDelivery, part: list[DeliveryItem], outcome: PostOutcome
    ) -> list[list[DeliveryItem]]:
        """What to post instead of ``part`` after a 413, in the order to pop it (last first)."""
        if len(part) > 1:
            middle = len(part) // 2
            return [part[middle:], part[:middle]]
        item = part[0]
        shrunk = self._codec.shrink(item.fragment)
        if shrunk is None:
            logger.error("Langfuse of project %r refused a span as too large even with its values cut", project.id)
            self._count(project, "rejected", 1)
            outcome.rejected.append(item)
            return []
        self._count(project, "truncated", 1)
        return [[DeliveryItem(shrunk, item.id)]]

    # The spool -------------------------------------------------------------------------------

    async def _spool_fragments(self, project: ProjectDelivery, fragments: list[bytes]) -> None:
        if not fragments:
            return
        try:
            accepted = await self._spool.push(project.id, fragments)
        except StoreUnavailableError as error:
            accepted = 0
            logger.error("the trace spool is unavailable (%s)", error.message)
        self._count(project, "spooled", accepted)
        self._set_depth(project, SpoolDepth(project.depth.spans + accepted, project.depth.bytes))
        if accepted < len(fragments):
            project.full = True
            self._drop(project, len(fragments) - accepted, "the trace spool is full or unavailable")

    def _drop(self, project: ProjectDelivery, count: int, reason: str) -> None:
        self._count(project, "dropped", count)
        logger.error(
            "%d spans of project %r are lost: %s (dropped so far: %d)",
            count,
            project.id,
            reason,
            project.counts["dropped"],
        )

    async def _replay_forever(self) -> None:
        while not self._stopping:
            busy = False
            for project_id, target in list(self._targets().items()):
                project = self._project(project_id)
                if time.monotonic() < project.retry_at:
                    continue
                try:
                    busy = await self._replay_once(project, target) or busy
                    self._set_depth(project, await self._spool.depth(project_id))
                except StoreUnavailableError as error:
                    logger.warning("the trace spool could not be read: %s", error.message)
                    continue
                except Exception:  # the loop must outlive any one round: spans wait on it
                    logger.exception("replaying the trace spool of project %r failed", project_id)
                    continue
                project.update_full(self._spool.max_bytes)
            if not busy and not self._stopping:
                await asyncio.sleep(self._tuning.tick_s)

    async def _replay_once(self, project: ProjectDelivery, target: LangfuseTarget) -> bool:
        """Replay one batch of the project's spool; True when it made progress."""
        tuning = self._tuning
        spans = await self._spool.claim(
            project.id, max_bytes=tuning.max_batch_bytes, max_count=tuning.max_batch_spans, lease_s=tuning.lease_s
        )
        if not spans:
            if project.down and not project.pending:
                project.available()  # nothing to try it with: the next live batch will tell
            return False
        outcome = await self._post_all(
            project, target, [DeliveryItem(s.fragment, s.id) for s in spans], tuning.replay_timeout_s
        )
        done = [item.id for item in outcome.delivered + outcome.rejected if item.id is not None]
        if done:
            await self._spool.ack(project.id, done)
        if outcome.unavailable:
            await self._spool.release(project.id, [item.id for item in outcome.unavailable if item.id is not None])
        self._count(project, "replayed", len(outcome.delivered))
        return not outcome.unavailable

    # Shutdown --------------------------------------------------------------------------------

    async def close(self, deadline: float) -> None:
        """Deliver what is pending by ``deadline`` (``time.monotonic``); spool or count the rest.

        The intake is closed too: the delivery is its only user.
        """
        reserve = min(1.0, max(0.0, deadline - time.monotonic()) / 4)  # time kept to spool what is left
        self._stopping = True
        if self._replayer is not None:
            # A replay round under way may finish (its spans acknowledged), within the budget.
            await asyncio.wait({self._replayer}, timeout=max(0.0, deadline - reserve - time.monotonic()) / 2)
            await cancel_and_wait(self._replayer)
        senders = [p.sender for p in self._projects.values() if p.sender is not None and not p.sender.done()]
        senders += list(self._spooling)
        if senders:
            await asyncio.wait(senders, timeout=max(0.0, deadline - reserve - time.monotonic()))
        try:
            for project in self._projects.values():
                await self._leave(project, deadline)
                counts = project.counts
                logger.info(
                    "trace delivery of project %r stopped: %s spool_spans=%d",
                    project.id,
                    " ".join(f"{name}={counts[name]}" for name in COUNTS),
                    project.depth.spans,
                )
        finally:
            await self._intake.aclose()

    async def _leave(self, project: ProjectDelivery, deadline: float) -> None:
        await cancel_and_wait(project.sender)
        left = project.inflight + list(project.pending)
        project.inflight, project.pending, project.pending_bytes = [], deque(), 0
        if left:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._spool_fragments(project, left)
            except TimeoutError:
                self._drop(project, len(left), "shutdown ran out of time before they were spooled")
        if not self._spool.durable:
            depth = await self._spool.depth(project.id)
            if depth.spans:
                self._drop(project, depth.spans, "the spool is in memory (no Redis) and the process is stopping")
