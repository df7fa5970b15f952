"""The real components a benchmark runs against, started with the project's own runners.

A Kafka broker, an SMTP server, PostgreSQL (or SQLite files) and the four services, each a
process of its own on this machine, exactly as the end-to-end tests start them.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Iterator

from postsale_local.kafka import KafkaCluster
from postsale_local.postgres import PostgresCluster
from postsale_local.processes import free_port
from postsale_local.smtp import SmtpInbox
from postsale_local.suite import SERVICES, Suite

RESULTS = Path(__file__).parent / "results"


class TimedInbox(SmtpInbox):
    """The SMTP server, keeping for each message only when it arrived (`time.perf_counter()`),
    its recipient and its subject: cheap enough for thousands of messages a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, _server, _session, envelope) -> str:
        arrived = time.perf_counter()
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        with self._lock:
            self.arrivals.append((arrived, str(headers["To"]), str(headers["Subject"])))
        return "250 OK"

    def received(self, subject_prefix: str) -> list[tuple[float, str]]:
        """(arrival, recipient) of the messages whose subject starts with `subject_prefix`."""
        with self._lock:
            return [(t, to) for t, to, subject in self.arrivals if subject.startswith(subject_prefix)]


@dataclass
class Components:
    suite: Suite
    kafka: KafkaCluster
    smtp: TimedInbox
    postgres: PostgresCluster | None
    database_urls: dict[str, str]
    work: Path


@contextmanager
def running_components(use_postgres: bool, extra_env: dict[str, str] | None = None) -> Iterator[Components]:
    """Kafka, SMTP, the database and the four services, stopped (by the ids we started them with)
    on the way out, whatever happened."""
    work = Path(tempfile.mkdtemp(prefix="postsale-bench-"))
    kafka = KafkaCluster(work / "kafka")
    postgres = PostgresCluster() if use_postgres else None
    smtp = TimedInbox()
    suite = None
    try:
        kafka.start()
        smtp.start()
        if postgres:
            postgres.start()
            urls = {s: postgres.create_database(s) for s in SERVICES}
        else:
            urls = {s: f"sqlite:///{work / f'{s}.db'}" for s in SERVICES}
        suite = Suite(kafka_bootstrap_servers=kafka.bootstrap_servers, database_urls=urls, smtp_port=smtp.port,
                      log_dir=work / "logs", ports={s: free_port() for s in SERVICES}, extra_env=extra_env or {})
        suite.start()
        yield Components(suite, kafka, smtp, postgres, urls, work)
    finally:
        if suite:
            suite.stop()
        smtp.stop()
        if postgres:
            postgres.stop()
        kafka.stop()
        shutil.rmtree(work / "kafka", ignore_errors=True)  # the logs stay, for a run that went wrong


def percentiles(samples: list[float], quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    """Milliseconds: the nearest-rank percentiles of `samples` (seconds), their mean and maximum."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    out: dict[str, float] = {"count": len(ordered)}
    for q in quantiles:
        out[f"p{round(q * 100)}_ms"] = round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)
    out["mean_ms"] = round(statistics.fmean(ordered) * 1000, 2)
    out["max_ms"] = round(ordered[-1] * 1000, 2)
    return out


def machine() -> dict:
    """What a reader needs to judge the numbers: the machine, and how busy it was."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def cpu_seconds_by_component() -> dict[str, float]:
    """CPU seconds (user and system) used so far by the benchmark's own process (load generator,
    SMTP server, counting) and by each component it started, every process of its tree counted
    (PostgreSQL's backends, reaped children through their parent): read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    command: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue  # ended, not reaped yet: its time moves to its parent when it is
            command[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = sum(int(f) for f in fields[11:15]) / ticks
    me = os.getpid()
    totals: dict[str, float] = {}
    for pid, seconds in used.items():
        top = _under(pid, me, parent)
        if top is None:
            continue  # not started by the benchmark
        name = "benchmark (load, SMTP server, counting)" if top == me else _name(command.get(top, ""))
        totals[name] = totals.get(name, 0.0) + seconds
    return {name: round(seconds, 2) for name, seconds in sorted(totals.items())}


def _under(pid: int, me: int, parent: dict[int, int]) -> int | None:
    """The process right under the benchmark that `pid` descends from (the benchmark itself for
    its own pid), or None when `pid` is not one of the benchmark's."""
    while pid != me and parent.get(pid) not in (me, None, 0, 1):
        pid = parent[pid]
    return pid if pid == me or parent.get(pid) == me else None


def _name(line: str) -> str:
    """A component by its command line."""
    for service in SERVICES:
        if f"postsale.{service}." in line:
            return service
    if "java" in line:
        return "Kafka"
    if "postgres" in line:
        return "PostgreSQL"
    if "py-spy" in line:
        return "py-spy (profiling)"
    return line.split(" ", 1)[0].rsplit("/", 1)[-1] or "other"
