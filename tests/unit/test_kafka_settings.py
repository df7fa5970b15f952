"""The one place that turns the environment into Kafka client arguments, the installation's
prefix, and the PostgreSQL pool sizes. (The clients themselves on a broker with SASL and TLS:
tests/integration/test_kafka_security.py.)"""

from __future__ import annotations

import ssl

import pytest
from faststream.kafka.security import parse_security
from pydantic import ValidationError

from postsale.runtime.db import make_engine
from postsale.runtime.settings import DatabasePoolSettings, KafkaSettings, kafka_settings
from tests.integration.secured_kafka import make_certificates

pytestmark = pytest.mark.unit

ENV = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
       "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD",
       "KAFKA_SSL_CHECK_HOSTNAME", "POSTSALE_KAFKA_PREFIX", "POSTSALE_KAFKA_CREATE_TOPICS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_by_default_clients_connect_in_plaintext_without_prefix_and_create_topics():
    kafka = KafkaSettings()
    assert kafka.client_kwargs() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT",
                                     "ssl_context": None}
    assert kafka.faststream_security() is None
    assert (kafka.topic("checkout.purchases.v1"), kafka.group("postsale-checkout")) == (
        "checkout.purchases.v1", "postsale-checkout")
    assert kafka.create_topics is True
    assert kafka.partitions is None  # each topic's own, from the contracts


def test_sasl_scram_over_tls_from_the_environment(monkeypatch, certificates):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9094,kafka-2:9094")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")  # any case
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "postsale-checkout")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(certificates.ca))
    monkeypatch.setenv("POSTSALE_KAFKA_PREFIX", "shop-eu")
    monkeypatch.setenv("POSTSALE_KAFKA_CREATE_TOPICS", "false")
    kafka = KafkaSettings()
    kwargs = kafka.client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {"bootstrap_servers": "kafka-1:9094,kafka-2:9094", "security_protocol": "SASL_SSL",
                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "postsale-checkout",
                      "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "postsale test CA"),),)]
    assert "s3cret" not in repr(kafka)  # the password is a secret, kept out of logs
    assert (kafka.topic("checkout.purchases.v1"), kafka.group("postsale-checkout")) == (
        "shop-eu.checkout.purchases.v1", "shop-eu.postsale-checkout")
    assert kafka.create_topics is False


@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "PLAIN"), ("SSL", "PLAIN")])
def test_faststream_is_given_exactly_what_every_other_client_is_given(protocol, mechanism, certificates):
    """The broker's producer and consumers get their arguments from faststream's translation of
    `faststream_security()`; it must come out as the arguments of the relay, admin and lag clients."""
    kafka = KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="u", sasl_password="p",
                          ssl_cafile=certificates.ca, ssl_certfile=certificates.client_cert,
                          ssl_keyfile=certificates.client_key)
    ours, theirs = kafka.security_kwargs(), parse_security(kafka.faststream_security())
    ours_context, theirs_context = ours.pop("ssl_context"), theirs.pop("ssl_context")
    if protocol == "SSL":  # no SASL: faststream adds nothing more
        assert "sasl_mechanism" not in ours
    assert ours == theirs
    if protocol.endswith("SSL"):
        assert isinstance(ours_context, ssl.SSLContext) and isinstance(theirs_context, ssl.SSLContext)
    else:  # the certificate settings are ignored without TLS
        assert ours_context is None and theirs_context is None


def test_a_client_certificate_is_loaded_for_mutual_tls(certificates):
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=certificates.ca, ssl_certfile=certificates.client_cert,
                          ssl_keyfile=certificates.client_key, ssl_check_hostname=False)
    context = kafka.ssl_context()
    assert context is not None and not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("settings,complaint", [
    ({"security_protocol": "SASL_SSL", "sasl_username": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_password": "p"}, "KAFKA_SASL_USERNAME"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
      "sasl_password": "p"}, "sasl_mechanism"),
    ({"security_protocol": "TLS"}, "security_protocol"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nowhere/ca.pem"}, "no file at /nowhere/ca.pem"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/nowhere/key.pem"}, "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"),
    ({"prefix": "shop eu"}, "only letters, digits"),
])
def test_a_bad_kafka_setting_stops_the_service_before_it_starts(settings, complaint):
    with pytest.raises(ValidationError, match=complaint):
        KafkaSettings(**settings)


def test_the_prefix_is_a_name_and_a_dot(monkeypatch):
    assert KafkaSettings(prefix="acme.").topic("accounts.customers.v1") == "acme.accounts.customers.v1"
    monkeypatch.setenv("POSTSALE_KAFKA_PREFIX", "acme")
    # Bootstrap servers given, the rest from the environment.
    assert kafka_settings("broker:9092").topic("x") == "acme.x"
    assert kafka_settings("broker:9092").bootstrap_servers == "broker:9092"


def test_the_partitions_of_new_topics_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("POSTSALE_KAFKA_PARTITIONS", "12")
    assert KafkaSettings().partitions == 12
    monkeypatch.setenv("POSTSALE_KAFKA_PARTITIONS", "")  # as a chart or a Compose file leaves it unset
    assert KafkaSettings().partitions is None
    for value, complaint in (("0", "greater than or equal to 1"), ("5000", "less than or equal to 1000"),
                             ("many", "a valid integer")):
        monkeypatch.setenv("POSTSALE_KAFKA_PARTITIONS", value)
        with pytest.raises(ValidationError, match=f"POSTSALE_KAFKA_PARTITIONS\n  Input should be {complaint}"):
            KafkaSettings()


def test_postgresql_pools_are_sized_by_the_environment(monkeypatch):
    monkeypatch.setenv("POSTSALE_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("POSTSALE_DATABASE_MAX_OVERFLOW", "2")
    monkeypatch.setenv("POSTSALE_DATABASE_POOL_TIMEOUT", "4.5")
    monkeypatch.setenv("POSTSALE_DATABASE_POOL_RECYCLE", "1800")
    monkeypatch.setenv("POSTSALE_DATABASE_POOL_PING_AFTER_IDLE", "2.5")
    engine = make_engine("postgresql+psycopg://postsale:secret@127.0.0.1:1/checkout")  # never connects here
    try:
        pool = engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle, pool._pre_ping) == (  # noqa: SLF001
            3, 2, 4.5, 1800, False)  # pinged after a rest instead: tests/integration/test_database_pool.py
        assert len(pool.dispatch.checkout) == 1 and DatabasePoolSettings().pool_ping_after_idle == 2.5
    finally:
        engine.dispose()
    for name, value in (("POSTSALE_DATABASE_POOL_SIZE", "0"), ("POSTSALE_DATABASE_POOL_PING_AFTER_IDLE", "-1")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            DatabasePoolSettings()
        monkeypatch.delenv(name)
