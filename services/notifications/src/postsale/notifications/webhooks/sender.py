"""Sends the webhook attempts that are due: workers on the shared scheduler, each attempt one
signed POST with timeouts, never a redirect followed, never more than a bounded part of the
answer read.

No endpoint stalls the others: `NOTIFICATIONS_WEBHOOK_CONCURRENCY` workers run attempts at once
in threads of their own (the service's other work never waits for a slow endpoint), and one
endpoint has at most `NOTIFICATIONS_WEBHOOK_PER_ENDPOINT_CONCURRENCY` of them; its other due
attempts wait while the workers serve the other endpoints. The workers of a process never take
the same attempt (PostgreSQL's claim skips locked rows; on SQLite, which locks no rows, the
process keeps the attempts its workers are running).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import and_
from sqlalchemy.engine import Engine
from sqlmodel import Session

from postsale.notifications.config import WebhookSettings
from postsale.notifications.webhooks import deliveries, targets
from postsale.notifications.webhooks.deliveries import Outcome
from postsale.notifications.webhooks.tables import WebhookDelivery, WebhookEndpoint, WebhookSend
from postsale.runtime import standard_webhooks, wakeups
from postsale.runtime.clock import utcnow
from postsale.runtime.scheduler import Clock, Scheduler
from postsale.runtime.service import BackgroundTask

USER_AGENT = "Postsale-Webhooks/1 (+https://www.standardwebhooks.com)"
MAX_RESPONSE_BYTES = 64 * 1024  # read of an answer at most; its excerpt is kept
BATCH = 20
POSTPONE = timedelta(seconds=1)
RETENTION = timedelta(days=30)  # delivered deliveries and their attempts are kept this long
HOUSEKEEPING_INTERVAL = 600.0  # seconds between looks for old deliveries and stranded ones


def post(http: httpx.Client, endpoint: WebhookEndpoint, delivery: WebhookDelivery, *, timeout: float,
         private_allowed: bool) -> Outcome:
    """One attempt: the delivery's payload POSTed to the endpoint, signed for this attempt, to the
    address that was checked, and over in `timeout` seconds however slowly the endpoint answers."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        address = targets.check_resolved(endpoint.url, private_allowed=private_allowed)
    except targets.TargetRefused as exc:
        return Outcome(False, took(), error=f"not sent: the URL {exc}")
    url, host, extensions = targets.pinned(endpoint.url, address)
    body = delivery.payload.encode()
    # The wall clock, not the scheduler's: the receiver compares it with its own to refuse replays.
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "accept-encoding": "identity",
               **host, **standard_webhooks.headers(endpoint.secret, delivery.id, timestamp, body)}
    deadline = _Deadline(timeout)
    raw = bytearray()
    try:
        with deadline, http.stream("POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout),
                                   follow_redirects=False, extensions={**extensions, "trace": deadline.trace}
                                   ) as response:
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= MAX_RESPONSE_BYTES:
                    break
                deadline.check()
    except Exception as exc:  # noqa: BLE001 - whatever stops the call is a failed attempt, retried
        if deadline.passed():
            return Outcome(False, took(), error=f"no answer within {timeout:g} s")
        return Outcome(False, took(), error=f"no answer: {type(exc).__name__}: {exc}".rstrip(": "))
    try:
        text = bytes(raw[:MAX_RESPONSE_BYTES]).decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        text = bytes(raw[:MAX_RESPONSE_BYTES]).decode("utf-8", errors="replace")
    code = response.status_code
    succeeded = 200 <= code < 300
    return Outcome(succeeded, took(), status_code=code, response_excerpt=text,
                   error=None if succeeded else f"answered {code}" + (" (redirects are not followed)"
                                                                      if 300 <= code < 400 else ""))


class _Deadline:
    """The whole attempt's time limit. httpx limits each read, not the whole answer, so an endpoint
    sending a byte now and then would hold a worker for days: when the time is up, the connection
    is shut (from a timer thread; the read waiting on it ends at once), and between the chunks of
    the answer the time is checked."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.ends = seconds, time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._cut_done = False

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook: keeps the socket of each connection the attempt opens."""
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            sock = info.get("return_value") and info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                    if self._cut_done:
                        self._shut(sock)

    def check(self) -> None:
        if self.passed():
            raise TimeoutError(f"no answer within {self.seconds:g} s")

    def passed(self) -> bool:
        return time.monotonic() >= self.ends

    def _cut(self) -> None:
        with self._lock:
            self._cut_done = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already


class Sender:
    """Runs due `webhook_sends` rows with the attempt's HTTP call (`deliveries.attempt`)."""

    def __init__(self, engine: Engine, settings: WebhookSettings, *, private_allowed: bool, clock: Clock = utcnow,
                 http: httpx.Client | None = None, retention: timedelta = RETENTION) -> None:
        self.engine, self.settings, self.private_allowed = engine, settings, private_allowed
        # Each running attempt holds a database connection: some are left to the service's other work.
        pool_size = engine.pool.size() if hasattr(engine.pool, "size") else settings.concurrency + 1
        self.concurrency = max(1, min(settings.concurrency, pool_size - 1))
        # No connection kept between attempts: each connects to the address its check resolved,
        # and the deadline cuts the connection it opened.
        self.http = http or httpx.Client(limits=httpx.Limits(max_connections=self.concurrency * 2,
                                                             max_keepalive_connections=0))
        self.retention = retention
        self.scheduler = Scheduler(engine, deliveries.SENDS, WebhookSend, self._run, clock=clock)
        self._running: Counter[str] = Counter()  # attempts running per endpoint
        self._taken: set[str] = set()  # the `webhook_sends` rows they run, until their end is committed
        self._lock = threading.Lock()
        self._mine = threading.local()  # the row this worker runs

    def run_one(self) -> bool:
        """Claims and runs the earliest due attempt of an endpoint that has room; False when none."""
        with self._lock:
            full = sorted(e for e, n in self._running.items() if n >= self.settings.per_endpoint_concurrency)
            taken = sorted(self._taken)
        conditions = ([WebhookSend.endpoint_id.not_in(full)] if full else []) + \
            ([WebhookSend.id.not_in(taken)] if taken else [])  # type: ignore[attr-defined]
        try:
            return self.scheduler.run_one(where=and_(*conditions) if conditions else None)
        finally:
            # Only once the row's end is committed (or its failure recorded): until then SQLite,
            # which locks no rows, shows it due to the other workers, and one would call again.
            row_id, self._mine.row_id = getattr(self._mine, "row_id", None), None
            if row_id is not None:
                with self._lock:
                    self._taken.discard(row_id)

    def run_due(self) -> int:
        """Runs up to a batch of due attempts, one after another; returns how many."""
        ran = 0
        while ran < BATCH and self.run_one():
            ran += 1
        return ran

    def housekeeping(self) -> int:
        """Removes a batch of deliveries delivered longer ago than the retention (returns how many),
        and schedules an attempt for any pending delivery left without one."""
        now = self.scheduler.clock()
        with Session(self.engine) as session:
            removed = deliveries.prune(session, now - self.retention)
            session.commit()
        with Session(self.engine) as session:
            deliveries.reschedule_stranded(session, now)
            session.commit()
        return removed

    def _run(self, session: Session, row: WebhookSend, now: datetime) -> None:
        with self._lock:
            if row.id in self._taken:  # another worker runs it (SQLite claimed it twice): nothing to do
                return
            room = self._running[row.endpoint_id] < self.settings.per_endpoint_concurrency
            if room:
                self._running[row.endpoint_id] += 1
                self._taken.add(row.id)
                self._mine.row_id = row.id
        if not room:  # another worker took one of the endpoint's attempts since this one was claimed
            deliveries.postpone(session, row, now + POSTPONE)
            return
        try:
            deliveries.attempt(session, row, now, call=self._call,
                               disable_after=timedelta(days=self.settings.disable_after_days))
        finally:
            with self._lock:
                self._running[row.endpoint_id] -= 1
                if self._running[row.endpoint_id] <= 0:
                    del self._running[row.endpoint_id]

    def _call(self, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> Outcome:
        return post(self.http, endpoint, delivery, timeout=self.settings.timeout_seconds,
                    private_allowed=self.private_allowed)

    async def run(self) -> None:
        """The workers, until cancelled; each woken by the commit that queued an attempt, and
        otherwise waiting for the next attempt's due time (see `Scheduler`)."""
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-sender")
        loop = asyncio.get_running_loop()

        def run_due_or_wait() -> bool | float:
            return self.run_due() == BATCH or self.scheduler.seconds_to_next()

        async def batch() -> bool | float:
            return await loop.run_in_executor(executor, run_due_or_wait)

        async def housekeeping() -> bool:
            return await loop.run_in_executor(executor, self.housekeeping) == deliveries.PRUNE_BATCH

        try:
            await asyncio.gather(
                *(wakeups.run_loop(self.engine, deliveries.worker_name(n), batch,
                                   poll_interval=self.scheduler.poll_interval) for n in range(self.concurrency)),
                wakeups.run_loop(self.engine, f"{deliveries.SENDS}:housekeeping", housekeeping,
                                 poll_interval=HOUSEKEEPING_INTERVAL))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.http.close()


def webhook_sender(settings: WebhookSettings, clock: Clock = utcnow) -> BackgroundTask:
    """Sends webhook attempts as they fall due (`Sender`)."""

    async def webhook_sender(app: FastAPI) -> None:
        allowed = targets.private_allowed(settings.private_targets)
        sender = Sender(app.state.engine, settings, private_allowed=allowed, clock=clock,
                        retention=timedelta(days=settings.retention_days))
        try:
            await sender.run()
        finally:
            sender.close()

    return webhook_sender
