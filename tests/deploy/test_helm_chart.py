"""deploy/helm/postsale, checked without a cluster: `helm lint`, `helm template` piped into
`kubeconform -strict` against the Kubernetes schemas of the oldest and newest versions the
chart supports (offline: postsale_local.deploy_tools), and what a schema cannot tell: that
every path each service serves is routed to it on the one host, probes, hooks and secrets."""

from __future__ import annotations

import os

import pytest
from fastapi import routing

from postsale_local.deploy_tools import KUBERNETES_VERSIONS, crd_schema_location, kubernetes_schema_location
from postsale_local.suite import generate_secrets
from tests.deploy.conftest import (CHART, EXISTING_SECRETS_VALUES, KAFKA_SECURITY_VALUES, LINT_VALUES, SERVICES,
                                   helm_template, rendered, run, settings_variables)

pytestmark = pytest.mark.integration

VALUE_SETS = {"all-services": (LINT_VALUES,), "one-service-existing-secret": (LINT_VALUES, EXISTING_SECRETS_VALUES),
              "secured-kafka-pools-otlp": (LINT_VALUES, KAFKA_SECURITY_VALUES)}
# Served by every service for the cluster, never through the Ingress.
OPERATIONAL = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_helm_lint_passes(helm):
    for values in VALUE_SETS.values():
        args = ["lint", "--strict", CHART, "--kube-version", KUBERNETES_VERSIONS[-1]]
        for path in values:
            args += ["--values", path]
        result = run([helm, *args])
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_rendered_manifests_are_valid_kubernetes(helm, kubeconform, kube_version, values):
    template = helm_template(helm, *VALUE_SETS[values], kube_version=kube_version)
    assert template.returncode == 0, template.stderr
    result = run([kubeconform, "-strict", "-summary", "-kubernetes-version", kube_version,
                  "-schema-location", kubernetes_schema_location(), "-schema-location", crd_schema_location(), "-"],
                 input=template.stdout)
    # -strict: no property a schema does not know; and no kind without a schema (not skipped).
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def test_kubeconform_would_catch_a_mistake(helm, kubeconform):
    """The validation is not vacuous: a misspelt field is refused by the offline schemas."""
    template = helm_template(helm, LINT_VALUES)
    broken = template.stdout.replace("readinessProbe:", "readinesProbe:", 1)
    result = run([kubeconform, "-strict", "-kubernetes-version", KUBERNETES_VERSIONS[-1],
                  "-schema-location", kubernetes_schema_location(), "-"], input=broken)
    assert result.returncode != 0 and "readinesProbe" in result.stdout, result.stdout


def test_every_service_has_its_resources(helm):
    documents = rendered(helm, LINT_VALUES)
    for service in SERVICES:
        name = f"postsale-{service}"
        for kind in ("Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert name in by_kind(documents, kind), (kind, name)
        assert f"{name}-migrations" in by_kind(documents, "Job")
    assert set(by_kind(documents, "Ingress")) == {"postsale"}
    assert not by_kind(documents, "ServiceMonitor"), "ServiceMonitors are optional, off by default"


def test_probes_resources_and_a_locked_down_pod(helm):
    for name, deployment in by_kind(rendered(helm, LINT_VALUES), "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/var/lib/postsale"}
        assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
        assert pod["enableServiceLinks"] is False


def test_each_service_reads_its_settings_and_the_public_urls(helm):
    documents = rendered(helm, LINT_VALUES)
    config_maps, secrets = by_kind(documents, "ConfigMap"), by_kind(documents, "Secret")
    for service in SERVICES:
        config = config_maps[f"postsale-{service}"]["data"]
        assert {config[f"POSTSALE_{s.upper()}_URL"] for s in SERVICES} == {"https://shop.test"}
        assert config["KAFKA_BOOTSTRAP_SERVERS"]
        assert config["FORWARDED_ALLOW_IPS"] == "*", "client addresses from the ingress controller's X-Forwarded-For"
        secret = secrets[f"postsale-{service}"]["data"]
        assert f"{service.upper()}_DATABASE_URL" in secret and f"{service.upper()}_ADMIN_TOKEN" in secret
        assert not set(config) & set(secret)
        [container] = by_kind(documents, "Deployment")[f"postsale-{service}"]["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": f"postsale-{service}"}},
                                        {"secretRef": {"name": f"postsale-{service}"}}]


def test_kafka_security_prefix_pools_and_traces_reach_every_service(helm):
    """kafka.*, database.pool and telemetry.* become each service's settings: the non-secret
    ones in its ConfigMap, the passwords and OTLP headers in its Secret, the TLS files mounted
    where KAFKA_SSL_* point; a service's own entries override the chart's (one principal each)."""
    import base64

    documents = rendered(helm, LINT_VALUES, KAFKA_SECURITY_VALUES)
    config_maps, secrets = by_kind(documents, "ConfigMap"), by_kind(documents, "Secret")
    for service in SERVICES:
        config = config_maps[f"postsale-{service}"]["data"]
        secret = {k: base64.b64decode(v).decode() for k, v in secrets[f"postsale-{service}"]["data"].items()}
        uvicorn = {"FORWARDED_ALLOW_IPS"}  # read by the server, not the service's settings
        assert set(config) | set(secret) <= settings_variables(service)[0] | uvicorn, "only variables read"
        assert {k: config[k] for k in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "POSTSALE_KAFKA_PREFIX",
                                       "POSTSALE_KAFKA_CREATE_TOPICS", "POSTSALE_KAFKA_PARTITIONS",
                                       "KAFKA_SSL_CHECK_HOSTNAME")} == {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "POSTSALE_KAFKA_PREFIX": "shop-eu", "POSTSALE_KAFKA_CREATE_TOPICS": "false",
            "POSTSALE_KAFKA_PARTITIONS": "12", "KAFKA_SSL_CHECK_HOSTNAME": "true"}
        assert (config["KAFKA_SSL_CAFILE"], config["KAFKA_SSL_CERTFILE"], config["KAFKA_SSL_KEYFILE"]) == (
            "/etc/postsale/kafka-tls/ca.crt", "/etc/postsale/kafka-tls/tls.crt", "/etc/postsale/kafka-tls/tls.key")
        assert (config["POSTSALE_DATABASE_POOL_SIZE"], config["POSTSALE_DATABASE_MAX_OVERFLOW"],
                config["POSTSALE_DATABASE_POOL_RECYCLE"]) == ("20", "5", "300")
        assert (config["OTEL_EXPORTER_OTLP_ENDPOINT"], config["OTEL_TRACES_SAMPLER"], config["OTEL_TRACES_SAMPLER_ARG"],
                config["OTEL_RESOURCE_ATTRIBUTES"]) == ("http://otel-collector.observability.test:4318",
                                                        "parentbased_traceidratio", "0.25",
                                                        "deployment.environment.name=test")
        assert secret["OTEL_EXPORTER_OTLP_HEADERS"] == "authorization=Bearer test-only-otlp-token"
        assert "KAFKA_SASL_PASSWORD" not in config and "OTEL_EXPORTER_OTLP_HEADERS" not in config
        own = service == "checkout"  # its own principal
        assert config["KAFKA_SASL_USERNAME"] == ("postsale-checkout" if own else "postsale")
        assert secret["KAFKA_SASL_PASSWORD"] == ("test-only-checkout-kafka-password" if own else "test-only-kafka-password")
        pod = by_kind(documents, "Deployment")[f"postsale-{service}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert {"name": "kafka-tls", "mountPath": "/etc/postsale/kafka-tls", "readOnly": True} in container["volumeMounts"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
        assert volume["secret"]["secretName"] == "postsale-kafka-tls"
    # The defaults: plaintext, no prefix, topics created with a partition for each replica the
    # autoscaler may add, pools of 10, nothing exported.
    documents = rendered(helm, LINT_VALUES)
    config = by_kind(documents, "ConfigMap")["postsale-checkout"]["data"]
    assert (config["KAFKA_SECURITY_PROTOCOL"], config["POSTSALE_KAFKA_CREATE_TOPICS"], config["POSTSALE_DATABASE_POOL_SIZE"]) \
        == ("PLAINTEXT", "true", "10")
    max_replicas = {hpa["spec"]["maxReplicas"] for hpa in by_kind(documents, "HorizontalPodAutoscaler").values()}
    assert max_replicas == {int(config["POSTSALE_KAFKA_PARTITIONS"])}
    assert not {"POSTSALE_KAFKA_PREFIX", "KAFKA_SASL_USERNAME", "KAFKA_SSL_CAFILE", "OTEL_EXPORTER_OTLP_ENDPOINT"} & set(config)


def test_sasl_without_a_password_refuses_to_render(helm):
    result = helm_template(helm, LINT_VALUES, extra=("--set", "kafka.securityProtocol=SASL_SSL",
                                                     "--set", "kafka.sasl.username=postsale"))
    assert result.returncode != 0
    assert "kafka.sasl.password (or services.checkout.secrets.KAFKA_SASL_PASSWORD) is required" in result.stderr


def test_migrations_run_as_a_hook_before_install_and_upgrade(helm):
    documents = rendered(helm, LINT_VALUES)
    for service in SERVICES:
        job = by_kind(documents, "Job")[f"postsale-{service}-migrations"]
        secret = by_kind(documents, "Secret")[f"postsale-{service}-migrations"]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        # The Job's Secret exists before it: the release's own Secret does not, on install.
        assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert set(secret["data"]) == {f"{service.upper()}_DATABASE_URL"}
        pod = job["spec"]["template"]["spec"]
        # Never behind the Service: not the Deployment's selector.
        assert pod is not None and job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] \
            == f"{service}-migrations"
        assert f"from postsale.{service}.config import MIGRATIONS_DIR" in pod["containers"][0]["command"][2]
    # With a Secret managed outside the chart, the Job reads that one and the chart makes none.
    managed = rendered(helm, LINT_VALUES, EXISTING_SECRETS_VALUES)
    assert set(by_kind(managed, "Secret")) == set()
    [job] = by_kind(managed, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "postsale-checkout-managed"}}]


def test_the_chart_refuses_to_render_without_secrets(helm):
    result = helm_template(helm)
    assert result.returncode != 0
    assert "services.checkout.secrets.CHECKOUT_DATABASE_URL is required" in result.stderr
    short = helm_template(helm, LINT_VALUES, extra=("--set", "services.accounts.secrets.ACCOUNTS_ADMIN_TOKEN=short"))
    assert short.returncode != 0 and "ACCOUNTS_ADMIN_TOKEN must be at least 16 characters" in short.stderr


def test_the_optional_shape_one_service_tls_service_monitor(helm):
    documents = rendered(helm, LINT_VALUES, EXISTING_SECRETS_VALUES)
    assert set(by_kind(documents, "Deployment")) == {"postsale-checkout"}
    deployment = by_kind(documents, "Deployment")["postsale-checkout"]
    assert deployment["spec"]["replicas"] == 3 and not by_kind(documents, "HorizontalPodAutoscaler")
    assert by_kind(documents, "PodDisruptionBudget")["postsale-checkout"]["spec"] == {
        "minAvailable": 2, "selector": deployment["spec"]["selector"]}
    [monitor] = by_kind(documents, "ServiceMonitor").values()
    service = by_kind(documents, "Service")["postsale-checkout"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    [ingress] = by_kind(documents, "Ingress").values()
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.test"], "secretName": "shop-test-tls"}]
    paths = [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert "/checkout" in paths and not [p for p in paths if p.startswith("/admin")], "exposeAdmin: false"


def served_paths(service: str) -> set[str]:
    """Every path the service's app serves (pages excluded from its OpenAPI document included),
    from an app made with throwaway settings: nothing starts."""
    import importlib

    settings = {**generate_secrets(), f"{service.upper()}_DATABASE_URL": "sqlite://"}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        app = importlib.import_module(f"postsale.{service}.entrypoints.app").create_app()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # FastAPI wraps an included router's routes; its own OpenAPI generation walks them so.
    routes = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    paths = {route.path for route in routes if getattr(route, "path", None)}
    assert paths & {"/healthz", "/readyz"}, f"{service}'s routes were not found (FastAPI changed?)"
    return paths - OPERATIONAL


def route(ingress: dict, path: str) -> str | None:
    """The Service an Ingress sends `path` to: the longest matching Prefix path, matched element
    by element as the Ingress API specifies."""
    best = None
    for rule in ingress["spec"]["rules"]:
        for candidate in rule["http"]["paths"]:
            prefix = candidate["path"].rstrip("/")
            if path == prefix or path.startswith(prefix + "/") or prefix == "":
                if best is None or len(prefix) > len(best[0]):
                    best = (prefix, candidate["backend"]["service"]["name"])
    return best[1] if best else None


def test_the_one_host_routes_every_path_to_the_service_that_serves_it(helm):
    """Read from the services' own routes, so that a new page or admin resource that the
    Ingress does not route (or routes to another service) fails here."""
    [ingress] = by_kind(rendered(helm, LINT_VALUES), "Ingress").values()
    misrouted = []
    for service in SERVICES:
        for path in sorted(served_paths(service)):
            concrete = path.replace("{", "").replace("}", "")  # /offers/{offer_id} -> /offers/offer_id
            target = route(ingress, concrete)
            if target != f"postsale-{service}":
                misrouted.append(f"{path} ({service}) -> {target}")
    assert not misrouted, "add these to services.<name>.paths or adminPaths in values.yaml:\n" + "\n".join(misrouted)
    prefixes = [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert len(prefixes) == len(set(prefixes)), "a prefix is routed to two services"
