"""Writes deploy/compose.env from deploy/compose.env.example with a fresh value for every
empty secret (the settings that are not secrets keep the example's values).

    .venv/bin/python deploy/compose/write-env.py [--output PATH] [--force]

Needs `cryptography` (in the project's virtual environment) for the Ed25519 session key.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1]
EXAMPLE = DEPLOY / "compose.env.example"
# Left empty unless a seller uses them (Stripe, seller emails) or an operator does (a secured
# Kafka of their own, a prefix, more partitions, a trace collector).
OPTIONAL = {"CHECKOUT_STRIPE_API_KEY", "CHECKOUT_STRIPE_WEBHOOK_SECRET", "CHECKOUT_STRIPE_PUBLISHABLE_KEY",
            "NOTIFICATIONS_SELLER_EMAILS", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE",
            "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD", "POSTSALE_KAFKA_PREFIX",
            "POSTSALE_KAFKA_PARTITIONS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"}


def signing_key_line() -> str:
    """The PEM on one line, its line breaks written as \\n inside double quotes (Compose expands them)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return '"' + pem.replace("\n", "\\n") + '"'


def filled(example: str) -> str:
    lines = []
    for line in example.splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.lstrip().startswith("#") and not value and name not in OPTIONAL:
            # URL-safe: the passwords go into database URLs unescaped.
            value = signing_key_line() if name == "ACCOUNTS_SESSION_SIGNING_KEY" else secrets.token_urlsafe(32)
            line = f"{name}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEPLOY / "compose.env")
    parser.add_argument("--force", action="store_true", help="replace an existing file (and its secrets)")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"{args.output} exists; its secrets stay (use --force to replace them)", file=sys.stderr)
        return 1
    args.output.write_text(filled(EXAMPLE.read_text()))
    args.output.chmod(0o600)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
