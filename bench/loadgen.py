"""The load generator every phase of the benchmark uses: HTTP/1.1 over keep-alive connections on
asyncio, with requests written as bytes and answers read by Content-Length.

No HTTP client library: on two cores the client shares the CPU with the servers it measures,
and a full client spends several times more per request than the bare endpoint it is compared
with takes to answer. The same code drives the services and the bare endpoint, so neither
side of a comparison gets a cheaper client than the other.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import urlencode, urlsplit


class HttpError(RuntimeError):
    pass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode(errors="replace")


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened when the server closes it."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.default_headers = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return await self.request("GET", path, headers)

    async def post_form(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
        body = urlencode(form).encode()
        return await self.request("POST", path, {"Content-Type": "application/x-www-form-urlencoded",
                                                 **(headers or {})}, body)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Answer:
        head = {**self.default_headers, **(headers or {})}
        if body or method in ("POST", "PUT", "PATCH"):
            head["Content-Length"] = str(len(body))
        raw = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
               + "\r\n").encode() + body
        for attempt in (1, 2):
            if self._writer is None:
                await self._open()
            try:
                self._writer.write(raw)  # type: ignore[union-attr]
                answer = await self._read_answer()
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # A keep-alive connection the server closed while idle: open a new one, once.
                await self.close()
                if attempt == 2:
                    raise HttpError(f"{method} {path}: {exc!r}") from exc
                continue
            if answer.headers.get("connection", "").lower() == "close":
                await self.close()
            return answer
        raise AssertionError("unreachable")

    async def _read_answer(self) -> Answer:
        reader = self._reader
        assert reader is not None
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunks.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(c[:-2] for c in chunks)
        else:
            body = b""
        return Answer(status, headers, body)


@dataclass
class Rate:
    """What a closed loop of connections got in a fixed time."""

    answers: int = 0
    failures: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_failure: str | None = None

    @property
    def per_second(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0


async def closed_loop(base_url: str, path: str, *, connections: int, seconds: float,
                      headers: dict[str, str] | None = None, check: Callable[[Answer], bool] = lambda a: True,
                      warmup: float = 1.0) -> Rate:
    """`connections` clients, each sending its next request as soon as the previous one was
    answered, for `warmup` seconds not counted and then `seconds` counted. Answers that fail
    `check` count as failures, not as answers."""
    rate = Rate(seconds=seconds)
    start = time.perf_counter() + warmup
    end = start + seconds

    async def client() -> None:
        connection = Connection(base_url, headers)
        try:
            while (sent := time.perf_counter()) < end:
                answer = await connection.get(path)
                done = time.perf_counter()
                if sent < start:
                    continue
                if check(answer):
                    rate.answers += 1
                    rate.latencies.append(done - sent)
                else:
                    rate.failures += 1
                    rate.first_failure = rate.first_failure or f"{answer.status}: {answer.text()[:200]}"
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return rate


async def sequential(connection: Connection, path: str, count: int, *, headers: dict[str, str] | None = None,
                     check: Callable[[Answer], bool] = lambda a: True, warmup: int = 20) -> list[float]:
    """Seconds each of `count` requests took, one after another on one connection (after
    `warmup` uncounted ones): what one request costs, with nothing queued before it."""
    latencies = []
    for i in range(warmup + count):
        sent = time.perf_counter()
        answer = await connection.get(path, headers)
        took = time.perf_counter() - sent
        if not check(answer):
            raise HttpError(f"GET {path} answered {answer.status}: {answer.text()[:300]}")
        if i >= warmup:
            latencies.append(took)
    return latencies


async def paced(rate: float, count: int, start_one: Callable[[int], Awaitable[None]], *,
                max_in_flight: int = 256, give_up_after: float | None = None) -> list[float]:
    """Open loop: starts `start_one(i)` at `rate` per second whether or not earlier ones have
    finished (a closed loop would wait, and so hide any queueing). Returns how late each start
    was against its schedule. A start waits only when `max_in_flight` are still running, so a
    server that cannot keep up is not buried under thousands of connections; after
    `give_up_after` seconds no more are started (the lateness shows how far behind it fell)."""
    slots = asyncio.Semaphore(max_in_flight)
    lateness: list[float] = []
    tasks = []
    begin = time.perf_counter()

    async def run(i: int) -> None:
        try:
            await start_one(i)
        finally:
            slots.release()

    for i in range(count):
        if give_up_after is not None and time.perf_counter() - begin > give_up_after:
            break
        due = begin + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        lateness.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(run(i)))
    await asyncio.gather(*tasks)
    return lateness
