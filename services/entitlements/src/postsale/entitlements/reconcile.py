"""`python -m postsale.entitlements.reconcile [--repair] [--json] [--database-url URL]`

Compares the purchases entitlements received with its grants and reports paid-without-access and
access-without-payment, each with its cause; `--repair` fixes them through the normal use cases
(ledger entries by `system`, reason `reconciliation`). Progress goes to standard error, the report
to standard output. Exits 0 when nothing is left unreconciled, 1 otherwise.

It reads the database from `ENTITLEMENTS_DATABASE_URL` (or `--database-url`). It reconciles what
the purchase events said: a purchase whose event never reached entitlements is found with
`python -m postsale.runtime.messaging.deadletters list checkout|entitlements`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from postsale.entitlements.config import MIGRATIONS_DIR
from postsale.entitlements.reconciliation import Report, reconcile
from postsale.runtime.db import make_engine

TITLES = {"paid_without_access": "Paid without access", "access_without_payment": "Access without payment"}


class ProgressBar:
    """`[#####.....] 120/500 purchases` on a terminal, redrawn in place; a line per tenth otherwise."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out, self.width, self.shown = out, width, -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, done, 1)
        filled = self.width * done // total
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} purchases"
        if self.out.isatty():
            self.out.write("\r" + line + ("\n" if done >= total else ""))
        elif (tenth := 10 * done // total) != self.shown:
            self.shown = tenth
            self.out.write(line + "\n")
        self.out.flush()


def render(report: Report, repaired: bool) -> str:
    lines = [f"Checked {report.purchases} purchases and {report.grants} grants."]
    if not report.findings:
        lines.append("Every purchase received has the access its events say, and no grant lacks a purchase.")
    for kind, title in TITLES.items():
        found = [f for f in report.findings if f.kind == kind]
        if not found:
            continue
        lines.append(f"\n{title} ({len(found)}):")
        for f in found:
            where = f"customer {f.customer_id}, product {f.product_id}, purchase {f.purchase_id or '-'}" + \
                    (f", grant {f.grant_id}" if f.grant_id else "")
            mark = "  [repaired]" if f in report.repaired else ""
            lines.append(f"  - {where}: {f.cause}{mark}")
    if repaired:
        lines.append(f"\nRepaired {len(report.repaired)} of {len(report.findings)} (ledger: actor system, "
                     "reason reconciliation).")
    elif report.findings:
        lines.append("\nRun again with --repair to fix them.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postsale.entitlements.reconcile", description=__doc__.split("\n\n")[1])
    parser.add_argument("--repair", action="store_true", help="fix what is found through the normal use cases")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--database-url", default=os.environ.get("ENTITLEMENTS_DATABASE_URL",
                                                                 "sqlite:///.data/entitlements.db"))
    args = parser.parse_args(argv)
    engine = make_engine(args.database_url)
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if revision != head:
        print(f"The database is at revision {revision or 'none'}, not {head}: start entitlements once to migrate it.",
              file=sys.stderr)
        engine.dispose()
        return 2
    try:
        report = reconcile(engine, repair_them=args.repair, progress=ProgressBar(sys.stderr))
    finally:
        engine.dispose()
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report, args.repair))
    return 1 if report.unrepaired else 0


if __name__ == "__main__":
    sys.exit(main())
