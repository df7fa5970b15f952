"""A real SMTP server (aiosmtpd) that keeps what it receives in memory, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Callable

from aiosmtpd.controller import Controller

from postsale_local.processes import free_port


class SmtpInbox:
    """A real SMTP server (aiosmtpd) keeping what it receives in memory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._received = threading.Condition()
        self._controller: Controller | None = None
        # For fault tests: while `holding` is set, a message is kept but not yet answered, so its
        # sender waits before it can record that it went; `held` tells one waits.
        self.holding = threading.Event()
        self.held = threading.Event()

    async def handle_DATA(self, _server, _session, envelope) -> str:
        with self._received:
            self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
            self._received.notify_all()
        while self.holding.is_set():
            self.held.set()
            await asyncio.sleep(0.05)
        return "250 OK"

    def with_key(self, key: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Postsale-Email-Key"] == key]

    def wait_for(self, predicate: Callable[[EmailMessage], bool], timeout: float = 30) -> EmailMessage:
        with self._received:
            found = self._received.wait_for(lambda: next((m for m in self.messages if predicate(m)), None), timeout)
        if found is None:
            raise AssertionError(f"no matching email within {timeout}s; received: {[m['Subject'] for m in self.messages]}")
        return found

    def start(self) -> None:
        """Listens on `port`; again after `stop` (the fault tests take the relay down for a
        while), keeping what it received."""
        # A controller's event loop is closed by its stop: each start needs a new one.
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
