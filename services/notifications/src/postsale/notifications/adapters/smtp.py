"""Sending over SMTP."""

from __future__ import annotations

import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, parseaddr


class RelayRefused(Exception):
    """The relay refused the address for good (a 5xx answer to it): retrying cannot help."""


class SmtpSender:
    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 starttls: bool = False, from_address: str) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls = starttls
        self.from_address = from_address
        # Message-IDs on the store's own domain (the sender's), as the relay and spam filters expect.
        self.domain = parseaddr(from_address)[1].rpartition("@")[2] or "postsale.localhost"

    def send(self, *, to: str, subject: str, text_body: str, html_body: str, key: str,
             list_unsubscribe: str | None = None) -> str:
        """Sends one email; returns its Message-ID. A marketing email (`list_unsubscribe` set)
        carries one-click unsubscribe (RFC 8058). Raises RelayRefused when the relay refuses the
        address for good, and any other SMTP failure as it comes."""
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
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            try:
                smtp.send_message(message)
            except smtplib.SMTPRecipientsRefused as refused:
                answers = list(refused.recipients.values())
                if answers and all(500 <= code < 600 for code, _ in answers):
                    code, text = answers[0]
                    raise RelayRefused(f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}") \
                        from refused
                raise
        return message["Message-ID"]
