"""The Kubernetes manifests (docker/k8s/): each overlay renders with `kubectl kustomize`, every object
of a built-in kind is valid against the Kubernetes JSON schemas (kubernetes-validate, offline, strict:
an unknown field fails), the two CRDs (KEDA's ScaledObject, Prometheus Operator's ServiceMonitor) have
the structure their operators read, and the Deployment has the probes, shutdown timing, security
context and resources the service needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.app import create_app
from service.metrics import Metrics
from service.settings import Settings

from .conftest import REPO
from .test_docker import check_settings_env, image_user

OVERLAYS = ["gpu", "cpu"]
NAME = "vdvae-serve"
# The Dockerfile each overlay's image is built from (compose.yaml builds and tags both).
DOCKERFILE = {"gpu": "docker/Dockerfile", "cpu": "docker/Dockerfile.cpu"}
# The oldest Kubernetes whose schemas kubernetes-validate ships; the newest is checked too.
OLDEST_KUBERNETES = "1.25"
CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "ServiceMonitor")}


def app_routes(routes: list | None = None) -> dict[str, set[str]]:
    """Every route of the service's app, by path template: its methods (included routers too)."""
    if routes is None:
        routes = create_app(Settings(model_dir=Path("/tmp"))).routes
    found: dict[str, set[str]] = {}
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI keeps an included router wrapped; ours have no prefix
            found.update(app_routes(inner.routes))
        elif isinstance(getattr(route, "path", None), str):
            found.setdefault(route.path, set()).update(getattr(route, "methods", None) or ())
    return found


ROUTES = app_routes()
# The model requests: every POST route (the GETs are health, metrics, models, docs and pages).
MODEL_ROUTES = {path for path, methods in ROUTES.items() if "POST" in methods}


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client)")
    proc = subprocess.run(
        [kubectl, "kustomize", f"docker/k8s/overlays/{overlay}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict]]:
    """(overlay name, rendered objects by kind); each kind appears once."""
    docs = render(request.param)
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return request.param, {doc["kind"]: doc for doc in docs}


def container(objects: dict[str, dict]) -> dict:
    containers = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == [NAME]
    return containers[0]


def env_of(c: dict) -> dict[str, str]:
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names)), f"a variable is set twice: {names}"
    return {e["name"]: e["value"] for e in c["env"]}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("500m", "2", "8Gi", "1G") as a number of cores or bytes."""
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    scale.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert m, f"not a quantity: {value!r}"
    return float(m.group(1)) * scale[m.group(2) or ""]


def probe_budget_s(probe: dict) -> float:
    """Longest a probe can fail before the kubelet acts on it."""
    delay, period = probe.get("initialDelaySeconds", 0), probe.get("periodSeconds", 10)
    return delay + period * probe.get("failureThreshold", 3)  # the kubelet's defaults: 10 s, 3


def metric_names() -> set[str]:
    """Every sample name the service exports (vae_requests_total, vae_queue_depth, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics(max_batch_size=32)
    metrics.requests.labels(endpoint="/sample", code="200").inc()  # labelled metrics show once used
    metrics.queue_depth.labels(model="m", operation="sample").set(0)
    text = metrics.render().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


def test_built_in_kinds_are_valid_against_the_kubernetes_schemas(overlay) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (it is in the dev extra)"
    )
    _, objects = overlay
    without_schema, errors = set(), []
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        for obj in objects.values():
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                without_schema.add((obj["apiVersion"], obj["kind"]))
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"{obj['kind']} (Kubernetes {version}) at {path}: {e.message}")
    assert not errors, "\n".join(errors)
    # Only the two CRDs go without a schema: a built-in kind with a mistyped apiVersion would not.
    assert without_schema == CRDS
    assert {"Namespace", "Deployment", "Service", "PodDisruptionBudget"} <= set(objects)


def test_the_schema_check_rejects_a_misspelt_field(overlay) -> None:
    """The check above can fail: strict validation rejects a field Kubernetes does not know."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    _, objects = overlay
    deployment = yaml.safe_load(yaml.safe_dump(objects["Deployment"]))
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


# --------------------------------------------------------------------------------------------
# The objects fit together
# --------------------------------------------------------------------------------------------


def test_objects_share_one_namespace_and_select_the_pods(overlay) -> None:
    _, objects = overlay
    namespace = objects["Namespace"]["metadata"]["name"]
    for obj in objects.values():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["kind"]

    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selects_pods = lambda labels: labels.items() <= pod_labels.items()  # noqa: E731
    assert selects_pods(deployment["spec"]["selector"]["matchLabels"])
    assert selects_pods(objects["Service"]["spec"]["selector"])
    assert selects_pods(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])

    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000}
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["port"] == 8000 and service_port["targetPort"] in ("http", 8000)


def test_image_is_the_one_built_from_the_overlays_dockerfile(overlay) -> None:
    name, objects = overlay
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    # The services that build an image (vdvae-gpu-check runs the one vdvae builds).
    built = {s["build"]["dockerfile"]: s["image"] for s in compose["services"].values() if "build" in s}
    assert container(objects)["image"] == built[DOCKERFILE[name]]


def test_pod_binds_all_interfaces_with_settings_the_service_has(overlay, monkeypatch) -> None:
    name, objects = overlay
    c = container(objects)
    env = env_of(c)
    settings = check_settings_env(env, monkeypatch)
    assert settings.host == "0.0.0.0" and settings.port == c["ports"][0]["containerPort"]
    assert settings.device == {"gpu": "cuda", "cpu": "cpu"}[name]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    # Service links would put <SERVICE>_PORT=tcp://... in the environment: a Service named "vdvae"
    # would set VDVAE_PORT, which the service reads as its port and cannot parse.
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------------------------
# Start, probes and stop
# --------------------------------------------------------------------------------------------


def test_probes_wait_for_warm_up_and_follow_the_drain(overlay) -> None:
    name, objects = overlay
    c = container(objects)
    startup, readiness, liveness = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
    for probe in (startup, readiness, liveness):
        assert probe["httpGet"]["port"] in ("http", 8000)
        assert probe["httpGet"]["path"] in ROUTES
        assert probe.get("timeoutSeconds", 1) < probe.get("periodSeconds", 10)

    # Ready turns 200 only once the models are loaded and warmed up: the startup probe waits on it
    # (the other probes start after it) and allows a few minutes, more on a CPU.
    assert startup["httpGet"]["path"] == "/health/ready"
    assert probe_budget_s(startup) >= {"gpu": 180, "cpu": 300}[name]
    assert objects["Deployment"]["spec"]["progressDeadlineSeconds"] > probe_budget_s(startup)

    # Readiness turns 503 on SIGTERM: the pod leaves the endpoints within seconds.
    assert readiness["httpGet"]["path"] == "/health/ready"
    assert probe_budget_s(readiness) <= 15

    # Liveness on /health/ready would restart a replica that is warming up or draining.
    assert liveness["httpGet"]["path"] == "/health/live"
    assert probe_budget_s(liveness) >= 30


def test_grace_period_covers_the_pre_stop_sleep_and_the_drain(overlay, monkeypatch) -> None:
    _, objects = overlay
    c = container(objects)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep" and len(command) == 2
    pre_stop_s = float(command[1])
    # Long enough for the load balancers to drop the endpoint before SIGTERM stops new work.
    assert pre_stop_s >= 5

    drain_s = check_settings_env(env_of(c), monkeypatch).shutdown_timeout_s
    assert "VDVAE_SHUTDOWN_TIMEOUT_S" in env_of(c), "the drain is set where the grace period is"
    grace_s = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The grace period counts from the start of preStop; at its end the kubelet sends SIGKILL.
    # 10 s on top: the last responses go out and the process exits after the drain.
    assert grace_s >= pre_stop_s + drain_s + 10, (grace_s, pre_stop_s, drain_s)


def test_rollout_and_disruptions_keep_serving_replicas(overlay) -> None:
    _, objects = overlay
    deployment = objects["Deployment"]["spec"]
    assert "replicas" not in deployment, "the autoscaler owns the count; apply would reset it"
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    min_replicas = objects["ScaledObject"]["spec"]["minReplicaCount"]
    assert min_replicas >= 2
    budget = objects["PodDisruptionBudget"]["spec"]
    assert "minAvailable" not in budget and budget["maxUnavailable"] == 1 < min_replicas


# --------------------------------------------------------------------------------------------
# Security and resources
# --------------------------------------------------------------------------------------------


def test_pod_runs_unprivileged_on_a_read_only_root_with_a_tmp_volume(overlay) -> None:
    name, objects = overlay
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    c = container(objects)
    effective = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    uid, gid = image_user(REPO / DOCKERFILE[name])
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == uid and effective.get("runAsGroup", gid) == gid
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["readOnlyRootFilesystem"] is True
    assert effective.get("privileged", False) is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}

    # The only writable place is an emptyDir at /tmp, and everything that writes looks there.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp"}
    assert "emptyDir" in volumes[mounts["/tmp"]] and not c["volumeMounts"][0].get("readOnly", False)
    env = env_of(c)
    assert env["TMPDIR"] == "/tmp" and env["HOME"] == "/tmp"


def test_resources_are_requested_and_limited(overlay) -> None:
    name, objects = overlay
    c = container(objects)
    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert 0 < quantity(requests[resource]) <= quantity(limits[resource]), resource
    assert quantity(limits["memory"]) >= 2**30

    if name == "gpu":
        assert quantity(limits["nvidia.com/gpu"]) == 1
        assert quantity(requests.get("nvidia.com/gpu", 1)) == 1  # extended resources: request = limit
    else:
        assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests
        # torch counts the node's cores, not the container's limit: the threads are set, and leave
        # the event loop a core of the limit.
        threads = Settings(model_dir=Path("/tmp"), cpu_threads=env_of(c)["VDVAE_CPU_THREADS"]).cpu_threads
        assert 1 <= threads <= quantity(limits["cpu"]) - 1


# --------------------------------------------------------------------------------------------
# Scaling and scraping (CRDs: no schema ships with kubernetes-validate, so their structure here)
# --------------------------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_of_every_replica(overlay) -> None:
    _, objects = overlay
    monitor, service = objects["ServiceMonitor"], objects["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and "/metrics" in ROUTES
    assert re.fullmatch(r"\d+s", endpoint["interval"])


def test_scaled_object_scales_the_deployment_on_queries_of_real_metrics(overlay) -> None:
    _, objects = overlay
    scaled = objects["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == objects["Deployment"]["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]

    namespace = objects["Namespace"]["metadata"]["name"]
    job = objects["Service"]["metadata"]["name"]  # the job label the ServiceMonitor's targets get
    exported = metric_names()
    queried = set()
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        # AverageValue: KEDA divides the query's value by the replica count and compares it with
        # the threshold, so the query is the sum over the replicas.
        assert trigger["metricType"] == "AverageValue"
        meta = trigger["metadata"]
        assert re.fullmatch(r"https?://[^/\s]+(:\d+)?/?", meta["serverAddress"])
        assert isinstance(meta["threshold"], str) and float(meta["threshold"]) > 0  # KEDA reads a string
        query = meta["query"]
        assert query.startswith("sum(") and query.count("(") == query.count(")")
        for metric, labels in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", query):
            assert metric in exported, f"{metric} is not a metric the service exports"
            selectors = dict(re.findall(r'(\w+)=~?"([^"]*)"', labels))
            assert selectors["namespace"] == namespace and selectors["job"] == job, query
            if "endpoint" in selectors:
                # The operator's own `endpoint` target label would rename the service's otherwise.
                assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["honorLabels"] is True
                # A request-rate trigger counts every model request, and only those.
                assert set(selectors["endpoint"].split("|")) == MODEL_ROUTES, query
            queried.add(metric)
    # The design's signal: the work queued per replica.
    assert "vae_queue_depth" in queried
