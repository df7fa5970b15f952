"""The development mailbox: a real SMTP server that keeps every email it receives in a Maildir.

`python -m postsale.notifications.devmailbox --dir .data/mailbox --port 1025`; the
notifications service shows the folder at /mailbox when NOTIFICATIONS_DEV_MAILBOX_DIR names it.
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.maildir = mailbox.Maildir(directory, create=True)

    async def handle_DATA(self, _server, _session, envelope) -> str:
        self.maildir.add(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def read_messages(directory: Path) -> list[tuple[str, EmailMessage]]:
    """Every message in the Maildir, newest first, with its Maildir key."""
    if not directory.exists():
        return []
    box = mailbox.Maildir(directory, create=False)
    messages = []
    for key in box.keys():
        with box.get_file(key) as raw:
            messages.append((key, message_from_bytes(raw.read(), policy=policy.default)))
    return sorted(messages, key=_newest_first, reverse=True)


def _newest_first(item: tuple[str, EmailMessage]) -> tuple[float, str]:
    """By the moment in the Date header (its text would put "Sun, 29 Nov" above "Mon, 30 Nov"),
    then by the Maildir key, which starts with the time of delivery."""
    key, message = item
    sent = getattr(message.get("Date"), "datetime", None)
    return (sent.timestamp() if sent is not None else 0.0), key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args()
    controller = Controller(MaildirHandler(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print(f"development mailbox: SMTP on {args.host}:{args.port}, keeping mail in {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
