"""The purchase pipeline under load, each figure beside its floor from the same run (issue 13).

Starts Kafka, PostgreSQL, an SMTP server and the four services with the project's own runners,
then, after a few seconds of purchases that warm every component up, measures, in this order:

1. `/library` and the access check with a small access ledger (10 thousand rows);
2. checkout's HTTP side alone (downstream services paused): the floor for throughput;
3. purchases through all four services, sustained (py-spy profiles checkout and entitlements);
4. a raw aiokafka hop, then paid -> access at open-loop paced rates: half the rate the throughput
   phase sustained (the pipeline's own latency, without a queue), then the issue's 50 a second;
5. `/api/library` against a bare FastAPI endpoint served the same way, same load generator;
6. `/library` and the access check again as the ledger grows to 1 million rows;
7. checkout's outbox relay with few, then many, rows already sent in its table.

Writes bench/results/pipeline.json, the plots beside it, and the table in bench/README.md.

    .venv/bin/python bench/pipeline.py            # the full run (`make bench`), about 10 minutes
    .venv/bin/python bench/pipeline.py --quick    # every phase, short: for trying changes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.support

import growth  # noqa: E402
import purchases  # noqa: E402
import report  # noqa: E402
from harness import (RESULTS, Components, cpu_seconds_by_component, machine, percentiles,  # noqa: E402
                     running_components)
from loadgen import closed_loop  # noqa: E402
from postsale_local.processes import free_port, start_process, stop_process, wait_for_port  # noqa: E402
from tests.support import set_up_account  # noqa: E402

FULL = {"seconds": 60, "http_alone_seconds": 8, "buyers": 16, "rate": 50, "paced_seconds": 20, "calm_seconds": 30,
        "hop_seconds": 10, "rps_seconds": 10, "rps_connections": 16, "ledger_points": "10000,100000,1000000",
        "cost_requests": 400, "outbox_sent": 1_000_000, "relay_rows": 20_000, "relay_rounds": 3, "drain_timeout": 180,
        "profile_seconds": 20, "warm_seconds": 5}
QUICK = {"seconds": 10, "http_alone_seconds": 4, "paced_seconds": 6, "calm_seconds": 8, "hop_seconds": 4,
         "rps_seconds": 4, "ledger_points": "10000,30000", "cost_requests": 100, "outbox_sent": 30_000,
         "relay_rows": 2000, "relay_rounds": 1, "drain_timeout": 30, "profile_seconds": 6, "warm_seconds": 2}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def logged_in_customer(components: Components, offer_id: str, product_name: str) -> dict:
    """A buyer who bought the offer, set up the account and is logged in, with two more products
    granted by the seller: their session cookie and customer id."""
    suite = components.suite
    browser = httpx.Client(timeout=30)
    started = browser.post(f"{suite.url('checkout')}/offers/{offer_id}/checkout",
                           data={"email": f"reader-{uuid.uuid4().hex[:8]}@example.com"})
    paid = browser.post(f"{suite.url('checkout')}{started.headers['location']}/pay", data=purchases.CARD)
    purchase_id = paid.headers["location"].split("purchase=")[1].split("&")[0]
    created = set_up_account(browser, suite, paid.headers["location"])
    assert created.status_code == 303, created.text
    with psycopg.connect(purchases.libpq(components.database_urls["entitlements"])) as conn:
        customer_id = conn.execute("SELECT customer_id FROM purchases WHERE id = %s", (purchase_id,)).fetchone()[0]
    with suite.admin("entitlements") as entitlements:
        for name in ("Bench extra one", "Bench extra two"):
            product_id = suite.create_product(name)
            entitlements.post(f"/admin/access/customers/{customer_id}/grants",
                              json={"product_id": product_id}).raise_for_status()
    return {"cookie": browser.cookies["postsale_session"], "customer_id": customer_id, "purchase_id": purchase_id}


async def library_against_bare(components: Components, cookie: str, product_name: str, *, seconds: float,
                               connections: int) -> dict:
    """`/api/library` of the logged-in customer, then the bare endpoint, started with the very
    command line entitlements runs under (its module and port swapped), same load generator."""
    suite = components.suite
    args = [str(a) for a in suite.processes["entitlements"].args]
    port = free_port()
    args[args.index("postsale.entitlements.entrypoints.app:create_app")] = "bare_app:create_app"
    args[args.index("--port") + 1] = str(port)
    args += ["--app-dir", str(Path(__file__).parent)]
    bare = start_process(args, log=components.work / "logs" / "bare.log", env=suite.environment())
    try:
        wait_for_port(port, bare, timeout=60)
        check = lambda a: a.status == 200 and product_name.encode() in a.body  # noqa: E731
        service = await closed_loop(suite.url("entitlements"), "/api/library", connections=connections,
                                    seconds=seconds, headers={"Cookie": f"postsale_session={cookie}"}, check=check)
        floor = await closed_loop(f"http://127.0.0.1:{port}", "/api/library", connections=connections,
                                  seconds=seconds, check=lambda a: a.status == 200 and b"Bench" in a.body)
    finally:
        stop_process(bare)
    return {"connections": connections, "seconds": seconds, "server_command": args,
            **{name: {"per_second": round(r.per_second, 1), "answers": r.answers, "failures": r.failures,
                      "first_failure": r.first_failure, "latency": percentiles(r.latencies)}
               for name, r in (("service", service), ("bare", floor))}}


def cpu_per_purchase(before: dict[str, float], after: dict[str, float], purchases: int) -> dict[str, float]:
    """Milliseconds of CPU each component spent per purchase between the two readings (the
    throughput phase and its drain: every purchase of the phase all the way through), with their
    total: on 2 cores, 2,000 ms of CPU a second bound the rate at 2,000 / total purchases a second."""
    spent = {name: round((after[name] - before.get(name, 0.0)) * 1000 / max(purchases, 1), 1) for name in after}
    return {**spent, "total": round(sum(spent.values()), 1)}


def profile_start(components: Components, seconds: float, services: tuple[str, ...], phase: str) -> dict:
    """py-spy sampling the services (every thread, waiting ones too) for `seconds`, in the background."""
    py_spy = Path(sys.executable).parent / "py-spy"
    started = {}
    for service in services:
        out = RESULTS / f"profile-{phase}-{service}.txt"
        started[f"{service}, {phase}"] = (out, start_process(
            [py_spy, "record", "--pid", components.suite.processes[service].pid, "--duration", int(seconds),
             "--rate", 100, "--nonblocking", "--idle", "--format", "raw", "--output", out],
            log=components.work / "logs" / f"py-spy-{service}.log"))
    return started


def profile_collect(started: dict) -> dict:
    out = {}
    for service, (path, process) in started.items():
        try:
            process.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a profile is extra: never lose the run for it
            stop_process(process)
        out[service] = report.summarise_profile(path, service) if path.exists() else {"error": "no profile"}
    return out


async def measure(components: Components, settings: dict, result: dict) -> None:
    suite = components.suite
    entitlements_db = purchases.libpq(components.database_urls["entitlements"])
    store = suite.create_store("Bench", "Bench offer", amount=100)
    shop = purchases.Shop(suite, components.smtp, store.offer_id, store.product_id, entitlements_db,
                          purchases.libpq(components.database_urls["accounts"]))
    reader = await asyncio.to_thread(logged_in_customer, components, store.offer_id, store.product_name)
    # Nothing is measured on services that have served nothing yet (first imports, empty caches and
    # connection pools, Kafka's first fetches): a few seconds of purchases first, and their backlog.
    log("warming up")
    async with shop.counting() as (ent, acc):
        before = await shop.stage_counts(ent, acc)
    warm = await purchases.buy_for(shop, buyers=4, seconds=settings["warm_seconds"])
    await purchases.wait_until_caught_up(shop, {stage: count + len(warm) for stage, count in before.items()}, 60)
    points = [int(p) for p in settings["ledger_points"].split(",")]

    async def ledger_point(rows: int) -> None:
        log(f"ledger: loading to {rows} rows")
        loaded = await asyncio.to_thread(growth.load_ledger, entitlements_db, rows)
        log(f"ledger: {loaded}; measuring /library and the access check")
        cost = await growth.ledger_costs(
            suite.url("entitlements"), session_cookie=reader["cookie"], admin_token=suite.admin_token("entitlements"),
            customer_id=reader["customer_id"], product_id=store.product_id, product_name=store.product_name,
            requests=settings["cost_requests"])
        result["ledger_growth"].append({**loaded, **cost})

    result["ledger_growth"] = []
    await ledger_point(points[0])

    async with shop.counting() as (ent, acc):
        before = await shop.stage_counts(ent, acc)
    log("HTTP side alone (entitlements, accounts, notifications paused)")
    result["http_side_alone"] = await purchases.http_side_alone(
        shop, buyers=settings["buyers"], seconds=settings["http_alone_seconds"])
    log(f"  {result['http_side_alone']}")
    backlog = {stage: count + result["http_side_alone"]["paid"] for stage, count in before.items()}
    log(f"  caught up after {await purchases.wait_until_caught_up(shop, backlog, 120):.1f} s")

    log(f"throughput: {settings['buyers']} buyers for {settings['seconds']} s")
    before = purchases.database_activity(components.database_urls)
    shop.scanned.clear()
    cpu_before = cpu_seconds_by_component()
    result["throughput"] = await purchases.throughput(shop, buyers=settings["buyers"], seconds=settings["seconds"],
                                                      drain_timeout=settings["drain_timeout"])
    result["throughput"]["cpu_ms_per_purchase"] = cpu_per_purchase(cpu_before, cpu_seconds_by_component(),
                                                                   result["throughput"]["paid"])
    await asyncio.sleep(1)  # PostgreSQL publishes a backend's counters within a second of its transactions
    result["throughput"]["database_per_purchase"] = purchases.per_purchase(
        before, purchases.database_activity(components.database_urls), result["throughput"]["paid"], shop.scanned)
    log("  " + json.dumps({k: v for k, v in result["throughput"].items() if k != "per_second"}))

    log(f"raw Kafka hop at {settings['rate']}/s")
    result["kafka_hop"] = await purchases.kafka_hop(components.kafka.bootstrap_servers, rate=settings["rate"],
                                                    seconds=settings["hop_seconds"])
    log(f"  {result['kafka_hop']['produce_to_consume']}")
    # At 50 a second this machine only measures a growing queue; at half what the throughput phase
    # got through, the same path is measured with nothing waiting in front of each purchase.
    calm = max(0.5, round(result["throughput"]["through_per_second"] / 2, 1))
    log(f"paid -> access at {calm}/s (half the sustained rate) for {settings['calm_seconds']} s")
    result["paid_to_access_calm"] = await purchases.paid_to_access(shop, rate=calm, seconds=settings["calm_seconds"])
    log("  " + json.dumps({k: v for k, v in result["paid_to_access_calm"].items() if k != "samples_ms"}))
    log(f"paid -> access at {settings['rate']}/s for {settings['paced_seconds']} s")
    result["paid_to_access"] = await purchases.paid_to_access(shop, rate=settings["rate"],
                                                              seconds=settings["paced_seconds"])
    log("  " + json.dumps({k: v for k, v in result["paid_to_access"].items() if k != "samples_ms"}))

    result["profile"] = {}
    log("/api/library against a bare FastAPI endpoint")
    result["library_rps"] = await library_against_bare(components, reader["cookie"], store.product_name,
                                                       seconds=settings["rps_seconds"],
                                                       connections=settings["rps_connections"])
    rps = result["library_rps"]
    log(f"  service {rps['service']['per_second']}/s, bare {rps['bare']['per_second']}/s")
    if settings["profile"]:
        # Apart from the measured run: py-spy takes some of the two cores.
        seconds = max(3, settings["rps_seconds"] // 2)
        profiles = profile_start(components, seconds, ("entitlements",), "library")
        await closed_loop(suite.url("entitlements"), "/api/library", connections=settings["rps_connections"],
                          seconds=seconds, headers={"Cookie": f"postsale_session={reader['cookie']}"})
        result["profile"].update(profile_collect(profiles))

    for rows in points[1:]:
        await ledger_point(rows)

    checkout_db = purchases.libpq(components.database_urls["checkout"])
    result["outbox_relay"] = []
    for label, sent in (("few", None), ("many", settings["outbox_sent"])):
        loaded = await asyncio.to_thread(growth.load_sent_outbox_rows, checkout_db, sent or 0)
        log(f"outbox relay with {loaded['outbox_rows']} rows in the table")
        # One round moved by a fifth from run to run on this machine: the median of a few is kept.
        rounds = [await asyncio.to_thread(growth.relay_rate, checkout_db, rows=settings["relay_rows"])
                  for _ in range(settings["relay_rounds"])]
        rate = sorted(rounds, key=lambda r: r["per_second"] or 0)[len(rounds) // 2]
        result["outbox_relay"].append({"label": label, **loaded, **rate,
                                       "rounds_per_second": [r["per_second"] for r in rounds]})
        log(f"  {rate}, rounds: {result['outbox_relay'][-1]['rounds_per_second']}")

    if settings["profile"]:
        # Last, apart from every measured run: three profilers take a good part of the two cores.
        log(f"profiling the throughput phase's load for {settings['profile_seconds']} s")
        profiles = profile_start(components, settings["profile_seconds"], ("checkout", "entitlements",
                                                                           "notifications"), "throughput")
        await purchases.buy_for(shop, buyers=settings["buyers"], seconds=settings["profile_seconds"])
        result["profile"].update(profile_collect(profiles))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every phase, short (numbers marked as such)")
    for name, default in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None,
                            help=f"default {default} ({QUICK.get(name, default)} with --quick)")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
    args = parser.parse_args()
    settings = {name: getattr(args, name) if getattr(args, name) is not None
                else (QUICK.get(name, default) if args.quick else default) for name, default in FULL.items()}
    settings["profile"] = args.profile
    result: dict = {
        "benchmark": "pipeline", "database": "postgresql",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine_at_start": machine(), "settings": settings,
        "short_run": any(settings[k] != v for k, v in FULL.items()),
    }
    # Stopped from outside (`timeout`, a plain kill): still stop what the run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"load average at start: {result['machine_at_start']['load_average']}")
    RESULTS.mkdir(exist_ok=True)
    began = time.perf_counter()
    with running_components(use_postgres=True) as components:
        log(f"components up after {time.perf_counter() - began:.0f} s")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(measure(components, settings, result))
    result["machine_at_end"] = machine()
    result["took_seconds"] = round(time.perf_counter() - began)
    report.write(result, RESULTS)
    log(f"done in {result['took_seconds']} s: {RESULTS / 'pipeline.json'}; the services' logs: {components.work}/logs")


if __name__ == "__main__":
    main()
