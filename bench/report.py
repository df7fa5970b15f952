"""Turns a run's results into what a reader sees: bench/results/pipeline.json, the PNG plots and
the table in bench/README.md (each figure, its target, its floor from the same run, met or how
far), and a summary of the py-spy profiles."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

README = Path(__file__).parent / "README.md"
TABLE_START, TABLE_END = "<!-- pipeline-results:start -->", "<!-- pipeline-results:end -->"
PROFILE_START, PROFILE_END = "<!-- pipeline-profile:start -->", "<!-- pipeline-profile:end -->"


def _times(x: float) -> str:
    # A near miss shows as such: 1.01× short, not 1.0×.
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1.1 else f"{x:.2f}×"


def _at_least(value: float, target: float) -> tuple[bool, str]:
    if value >= target:
        return True, "met"
    return False, f"{_times(target / value)} short" if value > 0 else "nothing measured"


def _at_most(value: float, target: float) -> tuple[bool, str]:
    if value <= target:
        return True, "met"
    return False, f"{_times(value / target)} over"


def _rows(n: int) -> str:
    return f"{n / 1e6:.3g} million" if n >= 1e6 else f"{n / 1e3:.3g} thousand" if n >= 1e3 else str(n)


def _ms(value: float) -> str:
    return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"


def figures(r: dict) -> list[dict]:
    """Each figure of the issue's table: what was measured, its target, its floor, met or how far."""
    out = []
    t, alone = r["throughput"], r["http_side_alone"]
    met, gap = _at_least(t["through_per_second"], 200)
    # Checkout's buyers take the cores first, so the window's figure says little of the capacity:
    # every purchase of the phase over the time until the last of them was through says that.
    drained = (f"{t['paid'] / (t['seconds'] + t['drained_after_seconds']):.1f}/s over the phase and its "
               f"{t['drained_after_seconds']:g} s drain; " if t.get("drained") else "")
    out.append({"figure": f"purchases through all four services, sustained {t['seconds']} s",
                "measured": f"{t['through_per_second']:g}/s ({drained}checkout answered {t['paid_per_second']:g}/s; "
                            f"slowest stage: {t['slowest_stage'].replace('_', ' ')})",
                "target": "≥ 200/s", "floor": f"{alone['per_second']:g}/s: checkout's HTTP side alone",
                "met": met, "how_far": gap})
    hop = r["kafka_hop"]["produce_to_consume"]
    paced = [(r["paid_to_access"], "")]
    if "paid_to_access_calm" in r:
        paced.append((r["paid_to_access_calm"], ", half the sustained rate"))
    for access, why in paced:
        for q, target in (("p50", 25), ("p99", 100)):
            value = access["paid_to_access"][f"{q}_ms"]
            met, gap = _at_most(value, target)
            out.append({"figure": f"paid → access visible {q}, paced {access['rate']:g}/s{why} "
                                  f"(checkout answered {access['answered_per_second']:g}/s)",
                        "measured": _ms(value), "target": f"≤ {target} ms",
                        "floor": f"{_ms(hop[f'{q}_ms'])}: raw aiokafka produce → consume", "met": met,
                        "how_far": gap})
    lib = r["library_rps"]
    service, bare = lib["service"]["per_second"], lib["bare"]["per_second"]
    share = service / bare if bare else 0.0
    met, gap = _at_least(share, 0.5)
    out.append({"figure": "`/api/library` for a logged-in customer", "measured": f"{service:g}/s ({share:.0%} of bare)",
                "target": "≥ 50 % of bare", "floor": f"{bare:g}/s: bare FastAPI endpoint", "met": met,
                "how_far": gap})
    small, large = r["ledger_growth"][0], r["ledger_growth"][-1]
    for key, name in (("library", "`/library`"), ("access_check", "access check")):
        ratio = large[key]["p99_ms"] / small[key]["p99_ms"]
        met, gap = _at_most(ratio, 1.5)
        out.append({"figure": f"{name} p99 with {_rows(large['ledger_rows'])} ledger rows",
                    "measured": f"{_ms(large[key]['p99_ms'])} ({ratio:.2f}× the {_rows(small['ledger_rows'])} p99)",
                    "target": f"≤ 1.5 × the {_rows(small['ledger_rows'])} p99",
                    "floor": f"{_ms(small[key]['p99_ms'])}: p99 with {_rows(small['ledger_rows'])} rows",
                    "met": met, "how_far": gap})
    few, many = r["outbox_relay"][0], r["outbox_relay"][-1]
    ratio = many["per_second"] / few["per_second"] if few["per_second"] and many["per_second"] else 0.0
    met, gap = _at_least(ratio, 0.9)
    out.append({"figure": f"outbox relay rate with {_rows(many['outbox_rows'])} rows in the table",
                "measured": f"{many['per_second']:g} rows/s ({ratio:.2f}× the rate with {_rows(few['outbox_rows'])})",
                "target": "independent of sent rows (≥ 0.9×)",
                "floor": f"{few['per_second']:g} rows/s with {_rows(few['outbox_rows'])} rows", "met": met,
                "how_far": gap})
    return out


def table(r: dict) -> str:
    start, end = r["machine_at_start"], r["machine_at_end"]
    lines = [
        f"Run of {r['started_at']} ({r['took_seconds']} s), PostgreSQL; {start['cpus']} cores; load average "
        f"{start['load_average'][0]:g} at the start, {end['load_average'][0]:g} at the end "
        f"(1 min; other work on the machine shows here).",
        "",
    ]
    if r["short_run"]:
        lines += ["**A short run** (shorter phases or fewer rows than `make bench`): indicative only.", ""]
    lines += ["| figure | measured | target | floor, same run | met? |", "| --- | --- | --- | --- | --- |"]
    for f in r["figures"]:
        lines.append(f"| {f['figure']} | {f['measured']} | {f['target']} | {f['floor']} | "
                     f"{'yes' if f['met'] else 'no: ' + f['how_far']} |")
    lines += ["", "![paid → access, and the raw Kafka hop](results/latency.png)",
              "![throughput over time](results/throughput.png)", "![cost growth](results/growth.png)"]
    return "\n".join(lines)


# --- the profiles -----------------------------------------------------------------------------

# Where a sample's time goes: the first of these that matches a frame, from the innermost frame out.
CATEGORIES = [
    ("taking or waiting for a pooled database connection",
     re.compile(r"^(QueuePool\._do_get|Queue\.get) \(sqlalchemy/")),
    ("PostgreSQL round trips (psycopg: waiting for the server and the protocol)", re.compile(r"psycopg/")),
    ("SQLAlchemy (ORM, Core, the pool's checkout)", re.compile(r"sqlalchemy/")),
    ("Jinja2 templates", re.compile(r"jinja2/")),
    ("pydantic (validation, serialisation, settings)", re.compile(r"pydantic(_core|_settings)?/")),
    ("session tokens (PyJWT, cryptography)", re.compile(r"jwt/|cryptography/")),
    ("Kafka clients (aiokafka, faststream)", re.compile(r"aiokafka/|faststream/")),
    ("telemetry (OpenTelemetry, Prometheus, logging)", re.compile(r"opentelemetry/|prometheus_client/|logging/")),
    ("FastAPI, Starlette, uvicorn (routing, requests, forms)", re.compile(r"fastapi/|starlette/|uvicorn/|multipart/")),
    ("Postsale's own code", re.compile(r"\((checkout|entitlements|accounts|notifications|runtime|contracts)/")),
    ("the event loop and thread hand-offs (asyncio, anyio)", re.compile(r"asyncio/|anyio/|concurrent/")),
]
OWN = CATEGORIES[-2][1]
# Frames worth naming (a sample counts once if any of its frames matches), for what the issue suspects.
NOTABLE = [
    ("in the request thread pool (anyio's workers: request handlers)", r"^WorkerThread\.run \(anyio/"),
    ("in asyncio's executor threads (consumers, outbox relay, schedulers)", r"^_WorkItem\.run \(concurrent/"),
    ("consumers handling records (`apply_batch`, a transaction per batch; `apply_once`, one per record)",
     r"^apply_(batch|once) \("),
    ("the outbox relay", r"^OutboxRelay\."),
    ("the schedulers' rounds (`Scheduler.run_due`)", r"^Scheduler\.run_due \("),
    ("single-row reads by primary key (`Session.get`)", r"^Session\.get \(sqlalchemy/"),
    ("reloading attributes a commit expired", r"^_load_scalar_attributes \(sqlalchemy/"),
    ("`Session.flush`", r"^Session\.flush \(sqlalchemy/"),
    ("`Session.commit`", r"^Session\.commit \(sqlalchemy/"),
    ("taking a connection from the pool (`Pool.connect`)", r"^Pool\.connect \(sqlalchemy/"),
    ("of which pings of a rested connection (`do_ping`)", r"do_ping \(sqlalchemy/"),
    ("opening new database connections", r"^Connection\.connect \(psycopg/"),
    ("Jinja2 templates", r"\(jinja2/"),
    ("session tokens (PyJWT)", r"\(jwt/"),
]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:\d+)?\)$")


def _frames(stack: str) -> list[str]:
    """The Python frames of one raw py-spy stack, outermost first, as 'function (file)'."""
    frames = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        if match:
            frames.append(f"{match['function']} ({match['file'].split('site-packages/')[-1]})")
    return frames


def _is_idle(frames: list[str]) -> bool:
    """A thread with nothing to do: the event loop waiting for events, a worker waiting for a job."""
    if not frames:
        return True
    inner = frames[-1]
    # uvloop polls in C under `Runner.run`; an executor's idle worker blocks in C under `_worker`.
    if re.search(r"\((asyncio/runners|asyncio/base_events|selectors)\.py\)|^_worker \(concurrent/futures/thread",
                 inner):
        return True
    if "wait (threading.py)" in inner or "get (queue.py)" in inner:
        # The first frame outside threading/queue says whose wait it is.
        owner = next((f for f in reversed(frames) if not re.search(r"\((threading|queue)\.py\)", f)), "")
        return bool(re.search(r"anyio/_backends|concurrent/futures/thread|_bootstrap", owner))
    return False


def summarise_profile(path: Path, service: str) -> dict:
    """Shares of busy samples per category, and the Postsale functions most often on the stack."""
    samples: Counter = Counter()
    own: Counter = Counter()
    notable: Counter = Counter()
    patterns = [(name, re.compile(pattern)) for name, pattern in NOTABLE]
    idle = total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = _frames(stack)
        if _is_idle(frames):
            idle += n
            continue
        # The innermost frame that matches a category names where the sample's time went.
        category = next((name for frame in reversed(frames) for name, pattern in CATEGORIES
                         if pattern.search(frame)), "other")
        samples[category] += n
        for frame in set(f for f in frames if OWN.search(f)):
            own[frame] += n
        for name, pattern in patterns:
            if any(pattern.search(f) for f in frames):
                notable[name] += n
    busy = total - idle
    share = lambda n: round(100 * n / busy, 1) if busy else 0.0  # noqa: E731
    return {"service": service, "samples": total, "busy_samples": busy, "idle_samples": idle,
            "categories": [{"where": name, "share": share(n)} for name, n in samples.most_common()],
            "on_the_stack": [{"where": name, "share": share(notable[name])} for name, _ in NOTABLE],
            "own_functions": [{"function": f, "share": share(n)} for f, n in own.most_common(10)],
            "raw": path.name}


def database_table(r: dict) -> str:
    """PostgreSQL's counters over the throughput phase, per purchase and database."""
    work = r["throughput"].get("database_per_purchase")
    if not work:
        return ""
    lines = ["PostgreSQL's own counters over the throughput phase (until drained), per purchase; they "
             "include what the services' pollers did meanwhile:", "",
             "| database | transactions | rows read | inserted | updated | sequential scans: rows read (scans) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for db, w in work.items():
        scans = ", ".join(f"`{t}` {c['seq_rows_read']:g} ({c['seq_scans']:g})"
                          for t, c in w.get("most_scanned", {}).items() if c["seq_rows_read"] >= 1)
        lines.append(f"| {db} | {w['commits']:g} | {w['rows_read']:g} | {w['rows_inserted']:g} | "
                     f"{w['rows_updated']:g} | {scans or 'none'} |")
    return "\n".join(lines + [""])


def cpu_table(r: dict) -> str:
    """CPU per purchase by component over the throughput phase: what bounds the rate on this machine."""
    cpu = dict(r["throughput"].get("cpu_ms_per_purchase") or {})
    if not cpu:
        return ""
    total = cpu.pop("total")
    cores = r["machine_at_start"]["cpus"]
    lines = [f"CPU spent per purchase over the throughput phase and its drain, by component (every process "
             f"of its tree), from `/proc`. At {total:g} ms a purchase, {cores} cores allow at most "
             f"{cores * 1000 / total:.1f} purchases a second, whatever waits on what:", "",
             "| component | CPU per purchase | share |", "| --- | --- | --- |"]
    lines += [f"| {name} | {ms:g} ms | {100 * ms / total:.0f} % |"
              for name, ms in sorted(cpu.items(), key=lambda item: -item[1])]
    return "\n".join(lines + [""])


def profile_tables(profile: dict) -> str:
    if not profile:
        return "(no profile in this run)"
    lines = []
    for service, p in profile.items():
        if "categories" not in p:
            continue
        lines += [f"**{service}**: {p['busy_samples']} busy samples of {p['samples']} "
                  f"(100 a second, every thread; {p['idle_samples']} idle ones left out)", "",
                  "| where the busy samples are (innermost match) | share |", "| --- | --- |"]
        lines += [f"| {c['where']} | {c['share']:g} % |" for c in p["categories"]]
        lines += ["", "| on the stack | share |", "| --- | --- |"]
        lines += [f"| {c['where']} | {c['share']:g} % |" for c in p.get("on_the_stack", [])]
        lines += ["", "| Postsale function on the stack | share |", "| --- | --- |"]
        lines += [f"| `{f['function']}` | {f['share']:g} % |" for f in p["own_functions"]]
        lines.append("")
    return "\n".join(lines)


# --- plots ------------------------------------------------------------------------------------


def plots(r: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines = [(f"paid → access, paced {r['paid_to_access']['rate']:g}/s", r["paid_to_access"]["samples_ms"])]
    if "paid_to_access_calm" in r:
        calm = r["paid_to_access_calm"]
        lines.append((f"paid → access, paced {calm['rate']:g}/s (half the sustained rate)", calm["samples_ms"]))
    lines.append(("raw aiokafka produce → consume (floor)", r["kafka_hop"]["samples_ms"]))
    for label, samples in lines:
        ordered = sorted(samples)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    for target, name in ((25, "p50 target"), (100, "p99 target")):
        ax.axvline(target, linestyle=":", color="grey")
        ax.text(target, 0.98, f" {name} ({target} ms)", color="grey", fontsize=8, rotation=90, va="top")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("share of purchases / records")
    ax.set_title("Latency distribution")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    t = r["throughput"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    seconds = [s["second"] for s in t["per_second"]]
    for stage in ("paid", "granted", "account_created", "email_accepted"):
        cumulative = [s[stage] for s in t["per_second"]]
        ax.plot(seconds, [b - a for a, b in zip([0] + cumulative[:-1], cumulative)], label=stage.replace("_", " "))
    ax.axhline(r["http_side_alone"]["per_second"], linestyle="--", color="black",
               label="checkout's HTTP side alone (floor)")
    ax.axhline(200, linestyle=":", color="grey", label="target")
    ax.axvline(t["seconds"], linestyle=":", color="red", label="buyers stop")
    ax.set_xlabel("second")
    ax.set_ylabel("purchases per second")
    ax.set_title(f"Throughput over time ({t['buyers']} buyers)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    rows = [g["ledger_rows"] for g in r["ledger_growth"]]
    for key, name in (("library", "/library"), ("access_check", "access check")):
        left.plot(rows, [g[key]["p99_ms"] for g in r["ledger_growth"]], marker="o", label=f"{name} p99")
        left.plot(rows, [g[key]["p50_ms"] for g in r["ledger_growth"]], marker=".", linestyle="--",
                  label=f"{name} p50")
    left.set_xscale("log")
    left.set_xlabel("access ledger rows (log scale)")
    left.set_ylabel("milliseconds")
    left.set_title("Cost of a request as the ledger grows")
    left.legend(fontsize=8)
    relay = r["outbox_relay"]
    right.plot([o["outbox_rows"] for o in relay], [o["per_second"] or 0 for o in relay], marker="o")
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("rows in the outbox table (log scale)")
    right.set_ylabel("rows published per second")
    right.set_title("Outbox relay rate")
    fig.tight_layout()
    fig.savefig(out / "growth.png", dpi=110)
    plt.close(fig)


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    if start not in text:
        return text.rstrip() + f"\n\n{start}\n{body}\n{end}\n"
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def write(r: dict, out: Path) -> None:
    r["figures"] = figures(r)
    (out / "pipeline.json").write_text(json.dumps(r, indent=1) + "\n")
    plots(r, out)
    text = README.read_text()
    text = _replace_between(text, TABLE_START, TABLE_END, table(r))
    text = _replace_between(text, PROFILE_START, PROFILE_END,
                            cpu_table(r) + "\n" + database_table(r) + "\n" + profile_tables(r.get("profile", {})))
    README.write_text(text)


if __name__ == "__main__":
    # Redraws the plots and the README's tables from the last run's JSON.
    results = Path(__file__).parent / "results"
    write(json.loads((results / "pipeline.json").read_text()), results)
