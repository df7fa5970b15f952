"""The development mailbox of `make run`: the mail it kept, newest first."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage

import pytest

from postsale.notifications.devmailbox import read_messages

pytestmark = pytest.mark.unit


def test_the_mailbox_lists_mail_newest_first_across_days(tmp_path):
    box = mailbox.Maildir(tmp_path / "mail")
    for subject, date in (("Monday's", "Mon, 30 Nov 2026 09:00:00 +0000"), ("Sunday's", "Sun, 29 Nov 2026 23:00:00 +0000"),
                          ("Monday's, later", "Mon, 30 Nov 2026 11:00:00 +0100"), ("undated", None)):
        message = EmailMessage()
        message["Subject"] = subject
        if date:
            message["Date"] = date
        box.add(message)
    # By their text, Sunday's would come first; 11:00 +01:00 is an hour after 09:00 UTC.
    assert [message["Subject"] for _, message in read_messages(tmp_path / "mail")] == [
        "Monday's, later", "Monday's", "Sunday's", "undated"]
