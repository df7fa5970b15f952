"""`/api/library` against a bare FastAPI JSON endpoint, in one process, without a server or Kafka.

What a request costs in the service's own process: entitlements' real app (`create_app`: every
middleware, the session verified against a JWKS that accounts' signer publishes, the database
query) and `bare_app.py` (the pipeline benchmark's floor), each asked by the same client (httpx
over ASGI, no network), in alternating rounds; the best round of each is kept. The pipeline
benchmark measures the same pair through uvicorn; this one takes a minute, so it can be run after
each change, and `--profile` shows where a request's time goes (pyinstrument).

    .venv/bin/python bench/library_inprocess.py [--postgres] [--requests 2000] [--concurrency 16] [--profile]

Writes `results/library_inprocess.json` (per database, or `--entry`: both rates, their ratio, the CPU
time per request of each, the settings) and, with `--profile`,
`results/library_inprocess-profile-<database>.txt`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "library_inprocess.json"
sys.path.insert(0, str(Path(__file__).parent))  # bare_app
# httpx's ASGI transport tries `import sniffio` on every request (to detect trio); without it
# installed, each try searches the whole path. Marked missing, the import fails at once: the
# client's own cost, paid by both endpoints alike, shrinks, so the ratio shows more of the server's.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


def serve_jwks(jwks: dict) -> ThreadingHTTPServer:
    """Accounts' `/.well-known/jwks.json`, so that the service's verifier fetches the key as it does
    in production (once, then from its cache)."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def database(postgres: bool, work: Path) -> Iterator[str]:
    """A SQLite file, or a database on a PostgreSQL cluster of our own (the project's runner)."""
    if not postgres:
        yield f"sqlite:///{work / 'entitlements.db'}"
        return
    from postsale_local.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        yield cluster.create_database("entitlements")


def library_app(database_url: str, work: Path, products: int, accounts_url: str):
    """Entitlements' app on a migrated database, with one customer (`cus_bench`) owning `products`
    products (a purchase each) among a hundred other customers."""
    os.environ.update({
        "ENTITLEMENTS_DATABASE_URL": database_url,
        "ENTITLEMENTS_ADMIN_TOKEN": "bench-admin-token-0123456789",
        "ENTITLEMENTS_STORAGE_DIR": str(work / "files"),
        "POSTSALE_ACCOUNTS_URL": accounts_url,
        "POSTSALE_LOG_LEVEL": "WARNING",
    })
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        os.environ.pop(name, None)  # no span exporter, as the services run by default
    from sqlmodel import Session

    from postsale.contracts import AccessPolicy, Money, PurchaseCompleted, PurchasedProduct, delivery_fields
    from postsale.entitlements import handlers
    from postsale.entitlements import products as catalog
    from postsale.entitlements.config import MIGRATIONS_DIR
    from postsale.entitlements.entrypoints.app import create_app
    from postsale.runtime.clock import utcnow
    from postsale.runtime.migrations import migrate

    app = create_app()
    engine = app.state.engine
    migrate(engine, MIGRATIONS_DIR)
    now = utcnow()
    with Session(engine) as session:
        ids = [catalog.create_product(session, name=f"Bench product {n}", description="A product of the benchmark.",
                                      delivery_type="membership").id for n in range(products)]
        session.commit()
    # Other customers' grants, so that the query picks the customer's rows out of many.
    buyers = [(f"cus_{n:04d}", f"buyer{n}@example.com", ids[n % products:n % products + 2]) for n in range(100)]
    buyers.append(("cus_bench", "bench@example.com", ids))
    with Session(engine) as session:
        for customer_id, email, theirs in buyers:
            for product_id in theirs:
                event = PurchaseCompleted(
                    purchase_id=f"pur_{uuid.uuid4().hex[:12]}", customer_id=customer_id, email=email,
                    offer_id="offer_bench", offer_name="Bench offer",
                    products=[PurchasedProduct(product_id=product_id, name="Bench", **delivery_fields("membership"))],
                    amount=Money(amount=4900, currency="EUR"), provider="sandbox", provider_payment_id="sbx_bench",
                    completed_at=now, new_customer=False, access_policy=AccessPolicy())
                handlers.grant_access_for_purchase(session, event, uuid.uuid4().hex, now=now)
        session.commit()
    return app


async def rate(app, headers: dict[str, str], requests: int, concurrency: int, expect: bytes) -> tuple[float, float]:
    """Requests per second of `GET /api/library`, `concurrency` clients asking again as soon as
    answered; and the process's CPU time per request (µs, every thread, the client's too), which
    other work on a shared machine disturbs less than the rate."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    # The cookie as a plain header, as a browser and the pipeline's load generator send it: httpx's
    # cookie jar costs the client more per request than some of what is measured.
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8002", headers=headers) as client:
        async def one() -> None:
            answer = await client.get("/api/library")
            if answer.status_code != 200 or expect not in answer.content:
                raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text[:200]}")

        async def worker(count: int) -> None:
            for _ in range(count):
                await one()

        for _ in range(min(200, requests)):  # warm up: the JWKS fetch, the pool, caches
            await one()
        share, extra = divmod(requests, concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(share + (n < extra)) for n in range(concurrency)))
        return requests / (time.perf_counter() - started), (time.process_time() - cpu) / requests * 1e6


def profile(app, headers: dict[str, str], requests: int, out: Path) -> None:
    """pyinstrument over the library's requests, one at a time. It samples the event loop's thread
    only: what the handler does in the thread pool shows as the loop waiting (`epoll.poll`)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="enabled")
    async def one_at_a_time() -> None:
        await rate(app, headers, requests, 1, b"Bench product 0")
        await app.state.loop_reads.dispose()

    with profiler:
        asyncio.run(one_at_a_time())
    # The request's path through the service (its middleware, routing, dependencies, the hop to the
    # thread pool), then the functions that spent the most time themselves.
    ours = (r"postsale|fastapi/(routing|dependencies/utils|concurrency)|starlette/(routing|concurrency|middleware)"
            r"|anyio/to_thread|sqlalchemy/(orm/session|engine/base|pool/base)|jwt/api_jwt|opentelemetry/sdk/trace"
            r"|prometheus_client/metrics")
    tree = profiler.output_text(unicode=True, time="percent_of_total",
                                processor_options={"show_regex": ours, "filter_threshold": 0.005})
    flat = profiler.output_text(unicode=True, flat=True, time="percent_of_total").splitlines()[:60]
    out.write_text(tree + "\n\nSelf time, flat:\n" + "\n".join(flat) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (a cluster of our own) instead of SQLite")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests of each endpoint a round "
                                                                   "(default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients asking at once (default 16, as the "
                                                                    "pipeline benchmark's connections)")
    parser.add_argument("--products", type=int, default=5, help="products the customer has (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both endpoints; the best of each is kept")
    parser.add_argument("--profile", action="store_true", help="then profile the library's requests (pyinstrument)")
    parser.add_argument("--label", default="", help="a note stored with the numbers (e.g. what changed)")
    parser.add_argument("--entry", help="the key the numbers are stored under in the JSON (default: the database's "
                                        "name; e.g. `sqlite, before` to keep a run to compare with)")
    args = parser.parse_args()

    from bare_app import create_app as bare_app

    from postsale.accounts.adapters.signing import SessionSigner, generate_private_key_pem
    from postsale.runtime.auth import SESSION_COOKIE

    name = "postgresql" if args.postgres else "sqlite"
    signer = SessionSigner(generate_private_key_pem())
    jwks = serve_jwks(signer.jwks())
    library_runs, bare_runs = [], []
    RESULTS.mkdir(exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="library-inprocess-") as work, \
                database(args.postgres, Path(work)) as url:
            app = library_app(url, Path(work), args.products, f"http://127.0.0.1:{jwks.server_port}")
            token = signer.sign(customer_id="cus_bench", email="bench@example.com", session_id="ses_bench",
                                lifetime=timedelta(hours=1))
            cookie, floor = {"Cookie": f"{SESSION_COOKIE}={token}"}, bare_app()
            print(f"measuring on {name}", file=sys.stderr, flush=True)

            async def alternate() -> None:
                for _ in range(args.rounds):
                    library_runs.append(await rate(app, cookie, args.requests, args.concurrency, b"Bench product 0"))
                    bare_runs.append(await rate(floor, {}, args.requests, args.concurrency, b"Bench"))
                await app.state.loop_reads.dispose()  # its pool belongs to this event loop

            asyncio.run(alternate())
            if args.profile:
                profile(app, cookie, args.requests, RESULTS / f"library_inprocess-profile-{name}.txt")
            app.state.engine.dispose()
    finally:
        jwks.shutdown()
    library, bare = max(r for r, _ in library_runs), max(r for r, _ in bare_runs)
    library_cpu, bare_cpu = min(c for _, c in library_runs), min(c for _, c in bare_runs)
    result = {
        "what": "GET /api/library of a logged-in customer in entitlements' app against bench/bare_app.py (one "
                "product), in one process over httpx's ASGI transport; requests per second and CPU time per "
                "request (this process's: the client's too, and SQLite's; not PostgreSQL's), best of the rounds",
        "label": args.label, "database": name, "requests": args.requests, "concurrency": args.concurrency,
        "customer_products": args.products, "rounds": args.rounds,
        "library_per_second": round(library, 1), "floor_bare_per_second": round(bare, 1),
        "ratio": round(library / bare, 3), "target_ratio": 0.5,
        "library_cpu_us_per_request": round(library_cpu), "floor_bare_cpu_us_per_request": round(bare_cpu),
        "ratio_by_cpu": round(bare_cpu / library_cpu, 3),
        "library_rounds_per_second": [round(r, 1) for r, _ in library_runs],
        "bare_rounds_per_second": [round(r, 1) for r, _ in bare_runs],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    OUT.write_text(json.dumps({**previous, args.entry or name: result}, indent=2) + "\n")
    print(f"{name}: /api/library {library:.0f}/s, bare endpoint {bare:.0f}/s: {library / bare:.0%} (target ≥ 50 %); "
          f"CPU per request {library_cpu:.0f} µs against {bare_cpu:.0f} µs ({bare_cpu / library_cpu:.0%})")


if __name__ == "__main__":
    main()
