"""Customers imported from a CSV file: read and checked row by row (each refused row with its reason),
kept for the owner's confirmation, then each row added through `customers.add_customer`, the use
case of adding a customer by hand (`CustomerRegistered` with the offers, which checkout grants, and
the welcome email). Each use case runs inside the caller's transaction and never commits."""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from postsale.accounts import customers
from postsale.accounts.adapters.tables import Customer, CustomerImport
from postsale.accounts.domain.setup import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH
from postsale.accounts.handlers import AccountError
from postsale.runtime.clock import utcnow
from postsale.runtime.web import normalize_email

MAX_FILE_BYTES = 1_000_000
# Each row is the whole add-a-customer use case (a few milliseconds, more on a busy SQLite) in the
# confirmation's one transaction: a thousand keeps it to seconds, and SQLite's write lock with it.
MAX_ROWS = 1_000
MAX_OFFERS = 50
COLUMNS = ("email", "first_name", "last_name", "offer_ids")
OFFER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
OFFER_SEPARATORS = re.compile(r"[;|\s]+")
KEPT_FOR = timedelta(days=30)  # then a preview or report is deleted
EXISTS = "already a customer: nothing changed (to grant them offers, open their profile)"


class ImportRefused(AccountError):
    """The file as a whole cannot be imported (not CSV, too large, a column Postsale does not know)."""


class AlreadyImported(AccountError):
    """This import was confirmed before: its rows are not added twice."""


@dataclass(frozen=True)
class Checked:
    accepted: list[dict]
    rejected: list[dict]


def _header(cells: list[str]) -> list[str]:
    names = [re.sub(r"[\s-]+", "_", cell.strip().lower()) for cell in cells]
    unknown = [f"“{cell.strip()[:40]}” (column {n})" if cell.strip() else f"an unnamed column (column {n})"
               for n, (cell, name) in enumerate(zip(cells, names), start=1) if name not in COLUMNS]
    if unknown:
        raise ImportRefused(f"The file has {'a column' if len(unknown) == 1 else 'columns'} Postsale does not know: "
                            f"{', '.join(unknown[:5])}. Use only {', '.join(COLUMNS)}, named in the first line.")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ImportRefused(f"The column {twice[0]} appears twice in the first line; keep one.")
    if "email" not in names:
        raise ImportRefused("The first line must name the columns, with at least email (e.g. "
                            "email,first_name,last_name,offer_ids).")
    return names


def _text(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise ImportRefused(f"The file is larger than {MAX_FILE_BYTES // 1_000_000} MB. Split it into smaller files.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused("The file is not UTF-8 text. In your spreadsheet, save it as “CSV UTF-8”.") from exc
    if "\x00" in text:
        raise ImportRefused("The file holds NUL characters, so it is not a CSV file. Export it again as CSV.")
    if not text.strip():
        raise ImportRefused("The file is empty.")
    return text


def _problem(values: dict[str, str], offers: list[str]) -> str | None:
    email = values["email"]
    if not email:
        return "no email address"
    if len(email) > MAX_EMAIL_LENGTH:
        return f"the email address is longer than {MAX_EMAIL_LENGTH} characters"
    if normalize_email(email) is None:
        return "not a valid email address"
    for column, words in (("first_name", "first name"), ("last_name", "last name")):
        if len(values[column]) > MAX_NAME_LENGTH:
            return f"the {words} is longer than {MAX_NAME_LENGTH} characters"
    if len(offers) > MAX_OFFERS:
        return f"more than {MAX_OFFERS} offers"
    wrong = [offer for offer in offers if not OFFER_ID.match(offer)]
    if wrong:
        return f"“{wrong[0][:40]}” is not an offer id (letters, digits and _ . : - only, up to 100 characters)"
    return None


def check_file(data: bytes) -> Checked:
    """Every row of the file, accepted or rejected with its reason; raises `ImportRefused` when the
    file as a whole cannot be read. Rows are numbered as a spreadsheet numbers them (the header is 1)."""
    reader = csv.reader(io.StringIO(_text(data), newline=""))
    accepted: list[dict] = []
    rejected: list[dict] = []
    seen: dict[str, int] = {}
    try:
        names = _header(next(reader))
        rows = 0
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            rows += 1
            if rows > MAX_ROWS:
                raise ImportRefused(f"The file has more than {MAX_ROWS:,} customers. Split it into smaller files.")
            values = {column: "" for column in COLUMNS}
            values.update({name: cell.strip() for name, cell in zip(names, cells)})
            offers = list(dict.fromkeys(o for o in OFFER_SEPARATORS.split(values["offer_ids"]) if o))
            row = {"row": number, "email": values["email"][:MAX_EMAIL_LENGTH],
                   "first_name": values["first_name"][:MAX_NAME_LENGTH],
                   "last_name": values["last_name"][:MAX_NAME_LENGTH], "offer_ids": offers[:MAX_OFFERS]}
            extra = [cell for cell in cells[len(names):] if cell.strip()]
            reason = (f"more values than the first line names columns ({len(names)})" if extra else
                      _problem(values, offers))
            email = normalize_email(values["email"]) if reason is None else None
            if email is not None and email in seen:
                reason = f"the same email address as row {seen[email]}"
            if reason is not None:
                rejected.append({**row, "offer_ids": [o[:100] for o in offers[:MAX_OFFERS]], "reason": reason})
                continue
            seen[email] = number
            accepted.append({**row, "email": email})
    except StopIteration:
        raise ImportRefused("The file is empty.") from None
    except csv.Error as exc:
        raise ImportRefused(f"The file is not valid CSV near line {reader.line_num}: {exc}.") from exc
    if not accepted and not rejected:
        raise ImportRefused("The file names its columns but has no customers.")
    return Checked(accepted, rejected)


def _existing(session: Session, emails: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(emails), 500):
        chunk = emails[start:start + 500]
        found.update(session.exec(select(Customer.email, Customer.id).where(col(Customer.email).in_(chunk))).all())
    return found


def _set_aside_customers(session: Session, checked: Checked, reason: str) -> Checked:
    """The rows of people who are customers already, moved to the rejected ones (with their id)."""
    existing = _existing(session, [row["email"] for row in checked.accepted])
    accepted = [row for row in checked.accepted if row["email"] not in existing]
    moved = [{**row, "reason": reason, "customer_id": existing[row["email"]]}
             for row in checked.accepted if row["email"] in existing]
    return Checked(accepted, sorted(checked.rejected + moved, key=lambda row: row["row"]))


def start_import(session: Session, *, staff_id: str, file_name: str, data: bytes) -> CustomerImport:
    """Checks the file and keeps its rows for the confirmation; nobody is added yet. Raises
    `ImportRefused` when the file cannot be read. Deletes the imports older than `KEPT_FOR`."""
    checked = _set_aside_customers(session, check_file(data), EXISTS)
    now = utcnow()
    session.execute(delete(CustomerImport).where(col(CustomerImport.created_at) < now - KEPT_FOR))
    batch = CustomerImport(id=secrets.token_urlsafe(16), staff_id=staff_id, file_name=file_name[:200],
                           created_at=now, accepted=json.dumps(checked.accepted), rejected=json.dumps(checked.rejected))
    session.add(batch)
    return batch


def run_import(session: Session, import_id: str) -> CustomerImport:
    """Adds each accepted row as a customer, as the seller adds one by hand; a row whose email became
    a customer's since the preview joins the rejected ones. Runs once: a second confirmation (a
    double click, two tabs) raises `AlreadyImported`, whichever replica takes it."""
    now = utcnow()
    # The claim is this transaction's first write: the other confirmation waits for it, then finds it taken.
    claimed = session.execute(update(CustomerImport).where(col(CustomerImport.id) == import_id,
                                                           col(CustomerImport.imported_at).is_(None))
                              .values(imported_at=now)).rowcount
    if not claimed:
        raise AlreadyImported("These customers were imported already.")
    batch = session.get(CustomerImport, import_id, populate_existing=True)
    rows = _set_aside_customers(session, Checked(json.loads(batch.accepted), json.loads(batch.rejected)),
                                "became a customer after the preview: nothing changed")
    imported = []
    for row in rows.accepted:
        customer = customers.add_customer(session, email=row["email"], first_name=row["first_name"],
                                          last_name=row["last_name"], offer_ids=row["offer_ids"])
        imported.append({**row, "customer_id": customer.id})
    batch.accepted, batch.rejected, batch.imported = json.dumps(imported), json.dumps(rows.rejected), len(imported)
    session.add(batch)
    return batch


def find(session: Session, import_id: str) -> CustomerImport | None:
    ok = 0 < len(import_id) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", import_id)
    return session.get(CustomerImport, import_id) if ok else None


def recent(session: Session, limit: int = 10) -> list[CustomerImport]:
    return list(session.exec(select(CustomerImport).order_by(col(CustomerImport.created_at).desc())
                             .limit(limit)).all())


def _cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula: shown as text instead.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def rejected_csv(batch: CustomerImport) -> str:
    """The rejected rows with their reasons, as a CSV file the seller can fix and upload again."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", *COLUMNS, "reason"])
    for row in json.loads(batch.rejected):
        writer.writerow([row["row"], *(_cell(row[c]) for c in COLUMNS[:3]), _cell(";".join(row["offer_ids"])),
                         row["reason"]])
    return out.getvalue()
