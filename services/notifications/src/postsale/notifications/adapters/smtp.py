"""Sending over SMTP."""

from __future__ import annotations

import hashlib
import smtplib
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Iterator

SMTP_TIMEOUT = 20
"""Seconds the relay may take over each step of the conversation (connecting, each command)."""


class RelayRefused(Exception):
    """The relay refused the address for good (a 5xx answer to it): retrying cannot help."""


class SmtpSender:
    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 starttls: bool = False, from_address: str, timeout: float = SMTP_TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.username, self.password = username, password
        self.starttls = starttls
        self.from_address = from_address
        # Message-IDs on the store's own domain (the sender's), as the relay and spam filters expect.
        self.domain = parseaddr(from_address)[1].rpartition("@")[2] or "postsale.localhost"

    def send(self, *, to: str, subject: str, text_body: str, html_body: str, key: str,
             list_unsubscribe: str | None = None) -> str:
        """Sends one email on a connection of its own; see `SmtpConnection.send`."""
        with self.connection() as smtp:
            return smtp.send(to=to, subject=subject, text_body=text_body, html_body=html_body, key=key,
                             list_unsubscribe=list_unsubscribe)

    @contextmanager
    def connection(self) -> Iterator[SmtpConnection]:
        """One SMTP connection for several emails, opened at the first and closed at the end:
        one handshake (and TLS, and login) for a batch instead of one per email."""
        connection = SmtpConnection(self)
        try:
            yield connection
        finally:
            connection.close()

    def message(self, *, to: str, subject: str, text_body: str, html_body: str, key: str,
                list_unsubscribe: str | None = None) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        # Derived from the email's key, never random: an email sent again after a crash (the relay took
        # it, the mark did not happen) keeps its Message-ID, so mailboxes show it once.
        message["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{self.domain}>"
        message["X-Postsale-Email-Key"] = key
        if list_unsubscribe:
            message["List-Unsubscribe"] = f"<{list_unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text_body)
        message.add_alternative(html_body, subtype="html")
        return message


class SmtpConnection:
    """A connection to the relay for one email after another (see `SmtpSender.connection`).

    After a failure the connection is dropped and the next email opens a new one, so one bad
    email never leaves the others a connection in an unknown state."""

    def __init__(self, sender: SmtpSender) -> None:
        self.sender = sender
        self._smtp: smtplib.SMTP | None = None

    def send(self, *, to: str, subject: str, text_body: str, html_body: str, key: str,
             list_unsubscribe: str | None = None) -> str:
        """Sends one email; returns its Message-ID. A marketing email (`list_unsubscribe` set)
        carries one-click unsubscribe (RFC 8058). Raises RelayRefused when the relay refuses the
        address for good, and any other SMTP failure as it comes."""
        message = self.sender.message(to=to, subject=subject, text_body=text_body, html_body=html_body, key=key,
                                      list_unsubscribe=list_unsubscribe)
        reused = self._smtp is not None
        try:
            self._send(message)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if not reused:
                raise
            self._send(message)  # the relay closed a connection we kept: once more, on a new one
        return message["Message-ID"]

    def _send(self, message: EmailMessage) -> None:
        smtp = self._open()
        try:
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as refused:
            # The relay answered and reset the transaction: the connection serves the next email.
            answers = list(refused.recipients.values())
            if answers and all(500 <= code < 600 for code, _ in answers):
                code, text = answers[0]
                raise RelayRefused(f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}") \
                    from refused
            raise
        except smtplib.SMTPServerDisconnected:
            raise  # `send` closes it, and tries once more when it was a connection kept from before
        except BaseException:
            self.close()
            raise

    def _open(self) -> smtplib.SMTP:
        if self._smtp is None:
            sender = self.sender
            smtp = smtplib.SMTP(sender.host, sender.port, timeout=sender.timeout)
            try:
                if sender.starttls:
                    smtp.starttls()
                if sender.username:
                    smtp.login(sender.username, sender.password or "")
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
