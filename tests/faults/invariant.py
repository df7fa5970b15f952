"""The invariant every fault must keep, read from every service's database, the SMTP server and
the broker once the suite has settled:

- every purchase a buyer saw paid is in checkout, once, with its payment;
- every paid purchase is granted once (entitlements' ledger and grants) and its confirmation
  emailed once (notifications' log and the SMTP server); every refund revokes once and is
  emailed once;
- nothing granted is unpaid: every grant belongs to a paid purchase, and a fully refunded
  purchase's grant is revoked;
- no email is sent twice or left unsent, whatever its kind (account set-up links too);
- no event is stuck: every outbox drained with nothing parked, every consumer group's lag zero,
  nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from postsale.runtime.messaging.consumer import LagMonitor
from postsale.runtime.messaging.deadletters import dead_letter_topic
from postsale.runtime.settings import KafkaSettings
from postsale_local.smtp import SmtpInbox
from postsale_local.suite import SERVICES, Suite
from tests.faults.load import Ledger


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lasting: list[str] = field(default_factory=list)  # those waiting cannot heal: something happened twice

    @property
    def final(self) -> bool:
        return bool(self.lasting)

    @property
    def settled(self) -> bool:
        """Nothing left that waiting could still change."""
        return len(self.problems) == len(self.lasting)

    def expect(self, condition: bool, problem: str, *, final: bool = False) -> None:
        if not condition:
            self.problems.append(problem)
            if final:
                self.lasting.append(problem)

    def describe(self) -> str:
        lines = [f"  {name}: {count}" for name, count in sorted(self.counts.items())]
        lines += [f"  PROBLEM: {problem}" for problem in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more problems")
        return "\n".join(lines)


def _rows(url: str, query: str) -> list[dict]:
    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


def check(suite: Suite, smtp: SmtpInbox, kafka: KafkaSettings, ledger: Ledger) -> Report:
    """One look at everything; the report's problems are empty when the invariant holds."""
    report = Report()
    db = suite.database_urls

    # checkout: what was paid, and refunded
    purchases = {p["id"]: p for p in _rows(db["checkout"], """
        SELECT p.id, p.email, p.offer_id, p.refunded, p.amount, p.subscription_id, pay.amount AS paid
        FROM purchases p LEFT JOIN payments pay ON pay.id = p.payment_id""")}
    refunds = _rows(db["checkout"], "SELECT id, purchase_id, amount FROM refunds")
    by_email = Counter((p["email"], p["offer_id"]) for p in purchases.values())
    report.counts.update({"purchases seen paid by buyers": len(ledger.paid), "purchases in checkout": len(purchases),
                          "subscriptions": sum(1 for p in purchases.values() if p["subscription_id"]),
                          "refunds": len(refunds), "buyer retries": ledger.retries})
    for email, offer_id in ledger.paid.items():
        report.expect(by_email[(email, offer_id)] == 1,
                      f"{email} paid for {offer_id}; checkout has {by_email[(email, offer_id)]} purchases of it",
                      final=by_email[(email, offer_id)] > 1)
    for purchase in purchases.values():
        report.expect(purchase["email"] in ledger.paid, f"purchase {purchase['id']} was never paid by a buyer")
        report.expect(purchase["paid"] == purchase["amount"], f"purchase {purchase['id']} has no payment of its amount")
    refunded = Counter(r["purchase_id"] for r in refunds)
    for purchase_id in ledger.refunded:
        report.expect(refunded[purchase_id] == 1, f"purchase {purchase_id} refunded {refunded[purchase_id]} times",
                      final=refunded[purchase_id] > 1)
    fully_refunded = {p["id"] for p in purchases.values() if p["refunded"] >= p["amount"]}

    # entitlements: each paid purchase granted once; nothing else granted; refunds revoked
    ledger = _rows(db["entitlements"], "SELECT purchase_id, action FROM access_ledger")
    grants = _rows(db["entitlements"], "SELECT purchase_id, source, status FROM access_grants")
    granted = Counter(e["purchase_id"] for e in ledger if e["action"] == "grant")
    revoked = Counter(e["purchase_id"] for e in ledger if e["action"] == "revoke")
    report.counts.update({"grants": len(grants), "grant ledger entries": sum(granted.values()),
                          "revocations": sum(revoked.values())})
    for purchase_id in purchases:
        report.expect(granted[purchase_id] == 1, f"purchase {purchase_id} granted {granted[purchase_id]} times",
                      final=granted[purchase_id] > 1)
        expected = 1 if purchase_id in fully_refunded else 0
        report.expect(revoked[purchase_id] == expected,
                      f"purchase {purchase_id} revoked {revoked[purchase_id]} times (expected {expected})")
    for grant in grants:
        report.expect(grant["source"] == "purchase" and grant["purchase_id"] in purchases,
                      f"a grant without a paid purchase: {grant}")
        wanted = "revoked" if grant["purchase_id"] in fully_refunded else "active"
        report.expect(grant["status"] == wanted, f"grant of {grant['purchase_id']} is {grant['status']}, not {wanted}")

    # notifications and the SMTP server: every email once, none left behind
    emails = {e["key"]: e for e in _rows(db["notifications"], """
        SELECT key, template, status, attempts, next_attempt_at > now() AS later FROM emails""")}
    # Never tried and due later: a follow-up on its schedule, not a stuck one.
    scheduled = {key for key, e in emails.items() if e["status"] == "queued" and e["attempts"] == 0 and e["later"]}
    report.counts["emails scheduled for later"] = len(scheduled)
    # The same message handed over again (same Message-ID) is one email to its reader: mailbox
    # providers show it once. Two Message-IDs for one key are two emails.
    messages = [(m["X-Postsale-Email-Key"], m["Message-ID"]) for m in list(smtp.messages)]
    delivered = Counter(key for key, _ in set(messages))
    report.counts.update({"emails logged": len(emails), "emails received by SMTP": len(messages),
                          "emails handed over again (same Message-ID)": len(messages) - len(set(messages)),
                          **{f"emails: {t}": n for t, n in Counter(e["template"] for e in emails.values()).items()}})
    for purchase_id in purchases:
        key = f"purchase-confirmation:{purchase_id}"
        report.expect(key in emails, f"no confirmation of purchase {purchase_id}")
    for refund in refunds:
        report.expect(f"refund-confirmation:{refund['id']}" in emails, f"no email of refund {refund['id']}")
    for key, email in emails.items():
        report.expect(email["status"] == "sent" or key in scheduled, f"email {key} is {email['status']}")
        report.expect(delivered[key] <= 1, f"email {key} received {delivered[key]} times (distinct Message-IDs)",
                      final=True)
        report.expect(delivered[key] >= 1 or email["status"] != "sent", f"email {key} marked sent, never received")
    for key in delivered.keys() - emails.keys():
        report.problems.append(f"SMTP received {key}, which notifications never logged")

    # no event stuck: outboxes, consumer lag, dead letters
    for service in SERVICES:
        [outbox] = _rows(db[service], """SELECT count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL) AS waiting,
                                                count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
                                                count(*) AS total FROM outbox""")
        report.counts[f"outbox rows: {service}"] = outbox["total"]
        report.expect(outbox["waiting"] == 0, f"{service}'s outbox has {outbox['waiting']} unsent rows")
        report.expect(outbox["parked"] == 0, f"{service}'s outbox parked {outbox['parked']} rows")
    lags, dead = asyncio.run(_kafka_state(kafka))
    report.counts["consumer groups"] = len({group for group, _ in lags})
    report.counts["consumer group partitions"] = len(lags)
    for (group, partition), lag in lags.items():
        report.expect(lag == 0, f"group {group} lags {lag} on {partition.topic}[{partition.partition}]")
    for service in SERVICES:
        report.expect(f"postsale-{service}" in {g.split(".")[-1] for g, _ in lags}, f"{service} committed no offset")
    report.counts["dead letters"] = sum(dead.values())
    for topic, count in dead.items():
        report.expect(count == 0, f"{count} records on {topic}")
    return report


async def _kafka_state(kafka: KafkaSettings) -> tuple[dict, dict[str, int]]:
    """Each consumer group's lag per partition, and the records on each dead-letter topic."""
    names = [kafka.topic(dead_letter_topic(service)) for service in SERVICES]
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:  # every group of the run (its prefix), such as notifications' second one for webhooks
        groups = [group for group, _kind in await admin.list_consumer_groups() if group.startswith(kafka.group(""))]
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([name for name in names if name in existing])
    finally:
        await admin.close()
    monitor = LagMonitor(kafka, groups)
    try:
        lags = await monitor.observe()
    finally:
        await monitor.close()
    partitions = [TopicPartition(topic["topic"], p["partition"]) for topic in described for p in topic["partitions"]]
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    dead = Counter({name: 0 for name in names})
    for partition, end in ends.items():
        dead[partition.topic] += end
    return lags, dict(dead)


def assert_invariant(name: str, suite: Suite, smtp: SmtpInbox, kafka: KafkaSettings, ledger: Ledger,
                     timeout: float = 150) -> Report:
    """Waits (up to `timeout`) for the suite to settle with the invariant holding, prints what
    was checked and the counts, and fails with the problems still found at the end."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        try:
            report = check(suite, smtp, kafka, ledger)
        except (KafkaError, SQLAlchemyError, OSError) as exc:  # a broker or server still coming back
            report = Report(problems=[f"could not look yet: {exc!r}"])
        if not report.problems or report.final or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"\n[fault] {name}: settled in {time.monotonic() - started:.0f}s; checked that every purchase the "
          f"buyers saw paid is in checkout once with its payment, granted once, emailed once; every refund "
          f"revoked and emailed once; no grant without a paid purchase; every email sent exactly once; "
          f"outboxes drained, nothing parked, consumer lag 0, no dead letters\n{report.describe()}")
    assert not report.problems, f"{name}: the invariant does not hold:\n{report.describe()}"
    return report
