"""A local Kafka broker with the listeners a real cluster has: SASL (PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512) in clear and over TLS, and TLS with client certificates; and, as where a
platform team manages topics, no topic created by the broker on a client's request.

Built on `postsale_local.kafka.KafkaCluster` (the same jars and JVM as every other test broker):
only each node's `server.properties` gains the listeners. The plain listener stays, for the
cluster's own readiness check and for the test's administration. Certificates come from a CA
made for the run (`cryptography`), the broker's naming 127.0.0.1, so hostnames are checked.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postsale.runtime.settings import KafkaSettings
from postsale_local.kafka import KafkaCluster
from postsale_local.processes import free_port

USERS = {"alice": "alice-secret"}  # the one user of every mechanism
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: clients trust it
    other_ca: Path  # a CA nobody uses: a client that trusts only it must refuse the broker
    server: Path  # the broker's key and chain (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key, issuer: x509.Name | None, issuer_key, *, ca: bool = False,
                 names: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = _key(), _key()
    ca = _certificate("postsale test CA", ca_key, None, ca_key, ca=True)
    other = _certificate("some other CA", other_key, None, other_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key,
                          names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client = _certificate("postsale-client", client_key, ca.subject, ca_key)
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    paths = Certificates(ca=folder / "ca.pem", other_ca=folder / "other-ca.pem", server=folder / "server.pem",
                         client_cert=folder / "client.pem", client_key=folder / "client.key")
    paths.ca.write_bytes(pem(ca))
    paths.other_ca.write_bytes(pem(other))
    paths.server.write_bytes(_pem_key(server_key) + pem(server) + pem(ca))
    paths.client_cert.write_bytes(pem(client))
    paths.client_key.write_bytes(_pem_key(client_key))
    return paths


class SecuredKafka(KafkaCluster):
    """One node; listeners PLAINTEXT (administration), SASL_PLAINTEXT, SSL (client certificate
    required) and SASL_SSL; `auto.create.topics.enable=false`."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, nodes=1)
        self.certificates = make_certificates(Path(data_dir) / "tls")
        self.ports = {"SASL_PLAINTEXT": free_port(), "SSL": free_port(), "SASL_SSL": free_port()}

    def _write_config(self, i: int) -> None:
        super()._write_config(i)
        path = self._node_dir(i) / "server.properties"
        props = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        extra = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items())
        props["listeners"] += f",{extra}"
        props["advertised.listeners"] += f",{extra}"
        props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"
        props["auto.create.topics.enable"] = "false"
        props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
        plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                 + " ".join(f'user_{user}="{password}"' for user, password in USERS.items()) + ";")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        for listener in ("sasl_plaintext", "sasl_ssl"):
            props[f"listener.name.{listener}.plain.sasl.jaas.config"] = plain
            props[f"listener.name.{listener}.scram-sha-256.sasl.jaas.config"] = scram
            props[f"listener.name.{listener}.scram-sha-512.sasl.jaas.config"] = scram
        props["ssl.keystore.type"] = "PEM"
        props["ssl.keystore.location"] = str(self.certificates.server)
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(self.certificates.ca)
        props["listener.name.ssl.ssl.client.auth"] = "required"
        props["listener.name.sasl_ssl.ssl.client.auth"] = "none"
        path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))

    def start(self, timeout: float = 120) -> None:
        super().start(timeout)
        try:
            self._add_scram_users()
        except BaseException:
            self.stop()
            raise

    def _add_scram_users(self) -> None:
        """SCRAM users are credentials stored by the cluster (PLAIN's are in the configuration)."""
        from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialUpsertion)

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            # One credential per user and request: the broker refuses two for the same user.
            upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS),
                                                    password.encode()) for user, password in USERS.items()]
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result(timeout=30)

    def settings(self, listener: str, **overrides) -> KafkaSettings:
        """Client settings for `listener` as an operator would write them (environment names
        aside): the right user and password, the CA, and the client certificate where needed."""
        values: dict = {"bootstrap_servers": f"127.0.0.1:{self.ports[listener]}", "security_protocol": listener}
        if listener.startswith("SASL_"):
            values |= {"sasl_mechanism": "PLAIN", "sasl_username": "alice", "sasl_password": USERS["alice"]}
        if listener in ("SSL", "SASL_SSL"):
            values["ssl_cafile"] = self.certificates.ca
        if listener == "SSL":
            values |= {"ssl_certfile": self.certificates.client_cert, "ssl_keyfile": self.certificates.client_key}
        return KafkaSettings(**(values | overrides))
