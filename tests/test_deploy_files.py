"""Deployment files that cannot be built here (no Docker engine): checked statically.

The Grafana dashboard may only query metrics that ``signaling.metrics.Metrics`` registers
(with their labels) and must show every one of them; compose.yaml must reserve a GPU, limit
resources and wire its healthcheck to /health/ready; the Dockerfile must be multi-stage,
run as a non-root user, have a HEALTHCHECK on /health/live and a CMD, and copy only files
that exist and that .dockerignore lets into the build context.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from signaling.config import RenderSettings, Settings, load_settings
from signaling.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
_TARGET_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes


def _registered() -> dict[str, set[str]]:
    """Every series name ``Metrics`` can expose → the labels it carries."""
    metrics = Metrics()
    names: dict[str, set[str]] = {}
    for attr in vars(metrics).values():
        if not isinstance(attr, MetricWrapperBase):
            continue
        labels = set(attr._labelnames)
        [family] = attr.describe()
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def _panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in items:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels(_dashboard()["panels"]) for t in p.get("targets", [])]


def test_dashboard_is_importable() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dash["panels"])
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_queries_only_registered_metrics_and_labels() -> None:
    registered = _registered()
    all_labels = set().union(*registered.values()) | _TARGET_LABELS
    exprs = _exprs()
    assert exprs
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        for name, matchers in re.findall(r"\b(avatar_[a-z0-9_]+)(?:\{([^}]*)\})?", expr):
            assert name in registered, f"{name} is not a metric of signaling/metrics.py: {expr}"
            keys = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers))
            unknown = keys - registered[name] - _TARGET_LABELS
            assert not unknown, f"{name} has no label(s) {unknown}: {expr}"
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            used = {label.strip() for label in group.split(",") if label.strip()}
            assert used <= all_labels, f"unknown label(s) {used - all_labels}: {expr}"


def test_dashboard_shows_every_metric() -> None:
    used = set(re.findall(r"\b(avatar_[a-z0-9_]+)", " ".join(_exprs())))
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in used}
    metrics = Metrics()
    for attr in vars(metrics).values():
        if isinstance(attr, MetricWrapperBase):
            [family] = attr.describe()
            assert family.name in families, f"add a panel for {family.name}"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_compose_reserves_a_gpu_and_checks_readiness() -> None:
    service = _compose()["services"]["avatar-rtc"]
    resources = service["deploy"]["resources"]
    [device] = resources["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert int(device["count"]) >= 1
    assert {"cpus", "memory"} <= set(resources["limits"])
    health = service["healthcheck"]
    assert health["test"][0] == "CMD" and any("/health/ready" in part for part in health["test"])
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in health


def test_compose_mounts_a_valid_config_and_a_data_volume() -> None:
    compose = _compose()
    service = compose["services"]["avatar-rtc"]
    mounts = [v.split(":") for v in service["volumes"]]
    targets = {m[1]: m[0] for m in mounts}
    assert "/data" in targets and targets["/data"] in compose["volumes"]
    config = targets["/etc/avatar-rtc/config.yaml"]
    assert "/etc/avatar-rtc/config.yaml" in service["command"]
    settings = load_settings(ROOT / config)  # the shipped config passes the server's validation
    assert settings.port == 8080
    assert service.get("network_mode") == "host" or any(
        str(p).endswith("/udp") for p in service.get("ports", [])
    ), "WebRTC media needs host networking or published UDP ports"


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


_KNOWN = {
    "FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "VOLUME",
    "HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL", "SHELL", "STOPSIGNAL", "ONBUILD",
}  # fmt: skip


def _ignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_dockerfile_is_multistage_nonroot_with_healthcheck_and_cmd() -> None:
    steps = _instructions()
    assert all(word in _KNOWN for word, _ in steps), [w for w, _ in steps if w not in _KNOWN]
    stages = [rest.split()[-1] for word, rest in steps if word == "FROM" and " AS " in rest]
    assert len(stages) >= 2, "a multi-stage build"
    assert any("nvidia/cuda" in rest and "runtime" in rest for word, rest in steps if word == "ARG")
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    tail = steps[final:]
    users = [rest for word, rest in tail if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime runs as a non-root user"
    [health] = [rest for word, rest in tail if word == "HEALTHCHECK"]
    assert "/health/live" in health and "CMD" in health
    [cmd] = [rest for word, rest in tail if word == "CMD"]
    [entry] = [rest for word, rest in tail if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["avatar-rtc"] and json.loads(cmd)[0] == "serve"
    assert any("espeak-ng" in rest and "python3.11" in rest for word, rest in tail if word == "RUN")


def test_dockerfile_copies_what_exists() -> None:
    steps = _instructions()
    stages = {rest.split()[-1] for word, rest in steps if word == "FROM" and " AS " in rest}
    for word, rest in steps:
        if word != "COPY":
            continue
        args = shlex.split(rest)
        flags = [a for a in args if a.startswith("--")]
        sources = [a for a in args if not a.startswith("--")][:-1]
        if any(f.startswith("--from=") for f in flags):
            assert flags[0].split("=", 1)[1] in stages
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not _ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize("doc", ["docs/deploy.md"])
def test_deploy_doc_covers_the_essentials(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    for needle in ("docker compose", "UDP", "TURN", "network_mode: host", "/health/ready",
                   "grafana-dashboard.json", "cannot be built"):  # fmt: skip
        assert needle in text, f"{doc} should mention {needle!r}"


# ---- cluster mode: deploy/compose.cluster.yaml, deploy/kuberay/, deploy/nginx/ ------------

DEPLOY = ROOT / "deploy"
SERVE_CONFIG = DEPLOY / "ray" / "serve.yaml"  # the render application's (cluster engineer's)
_DUMMY_SECRET = "a-shared-secret-of-the-nodes-0123"


def _cluster_compose() -> dict[str, Any]:
    text = (DEPLOY / "compose.cluster.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _host_paths(service: dict[str, Any]) -> list[str]:
    """The host side of a service's bind mounts (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith((".", "/", "$")):
            out.append(source)
    return out


def _settings_from_env(
    monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], env: dict[str, str]
) -> Settings:
    """``load_settings`` of the config ``data`` as a container with ``env`` would run it
    (``${VAR:?...}`` filled in)."""
    for key, value in env.items():
        if key.startswith("AVATAR_RTC_"):
            filled = _DUMMY_SECRET if str(value).startswith("${") else str(value)
            monkeypatch.setenv(key, filled)
    render = data.get("render", {})
    if "cluster" not in RenderSettings.model_fields and "cluster" in render:
        render.pop("cluster")  # render.cluster is checked by its own test below
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return load_settings(path)


def test_cluster_compose_has_ray_a_gpu_worker_media_nodes_and_a_proxy() -> None:
    services = _cluster_compose()["services"]
    head = services["ray-head"]
    assert "--head" in head["command"] and head["environment"]["RAY_USAGE_STATS_ENABLED"] == "0"
    gpu = services["render-gpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "--num-gpus=1" in gpu["command"] and "--address=ray-head:6379" in gpu["command"]
    app = services["render-app"]
    assert app["entrypoint"] == ["serve"] and app["command"][0] == "deploy"
    mounted = {v.split(":")[1]: v.split(":")[0] for v in app["volumes"]}
    assert mounted[app["command"][1]] == "./ray/serve.yaml"
    nodes = [name for name in services if name.startswith("media-")]
    assert len(nodes) >= 2
    for name in nodes:
        node = services[name]
        assert node["environment"]["AVATAR_RTC_CLUSTER__NODE_ID"] == name
        assert "${" in node["environment"]["AVATAR_RTC_ACCESS__TOKEN_SECRET"], "not in the file"
        shared = node["environment"]["AVATAR_RTC_CLUSTER__SHARED_STATE"]
        assert shared.startswith("redis://127.0.0.1:"), "the redis service, on the host"
        assert node.get("network_mode") == "host", "WebRTC media needs host networking"
        assert any("/health/ready" in part for part in node["healthcheck"]["test"])
    proxy = services["proxy"]
    assert any("media-nodes.conf" in v for v in proxy["volumes"])
    assert services["redis"]["network_mode"] == "host"


def test_cluster_image_has_ray_serve() -> None:
    extras = _cluster_compose()["x-image"]["build"]["args"]["EXTRAS"].split(",")
    assert "cluster" in extras
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^cluster = \[[^\]]*"ray\[serve\]', text, re.M), "the cluster extra"
    args = [rest for word, rest in _instructions() if word == "ARG"]
    assert any(rest.startswith("EXTRAS=") for rest in args)
    assert any('".[${EXTRAS}]"' in rest for word, rest in _instructions() if word == "RUN")


def test_rayservice_serve_config_passes_rays_schema() -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed in this environment")
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_kube("RayService")["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    assert [app.name for app in schema.applications] == ["avatar-render"]


def test_cluster_compose_mounts_only_files_that_exist() -> None:
    services = _cluster_compose()["services"]
    for name, service in services.items():
        for source in _host_paths(service):
            if source.startswith("$"):  # ${MUSETALK_DIR:-...}: the operator's weights
                continue
            path = (DEPLOY / source).resolve()
            if path == SERVE_CONFIG.resolve() and not path.exists():
                continue  # the render application's file: test_serve_config_* says so
            assert path.exists(), f"{name} mounts {source}, which does not exist"
    build = _cluster_compose()["x-image"]["build"]
    assert (DEPLOY / build["context"] / "Dockerfile").resolve().exists()


def test_media_node_config_passes_validation_on_every_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _cluster_compose()["services"]
    nodes = sorted(name for name in services if name.startswith("media-"))
    ports = set()
    for name in nodes:
        service = services[name]
        [config] = [v.split(":")[0] for v in service["volumes"] if "config" in v]
        data = yaml.safe_load((DEPLOY / config).read_text(encoding="utf-8"))
        settings = _settings_from_env(monkeypatch, data, service["environment"])
        assert settings.cluster.node_id == name
        assert sorted(settings.cluster.nodes) == nodes, "every node is in cluster.nodes"
        port = int(service["command"][service["command"].index("--port") + 1])
        assert settings.cluster.nodes[name].endswith(f":{port}")
        ports.add(port)
    assert len(ports) == len(nodes)
    nginx = (DEPLOY / "nginx" / "media-nodes.conf").read_text(encoding="utf-8")
    for name in nodes:  # nginx routes each node's sockets to the port it listens on
        assert f"~^{name}_" in nginx
        port = int(services[name]["command"][services[name]["command"].index("--port") + 1])
        assert f"server {name}:{port};" in nginx


def test_media_node_config_names_the_render_cluster() -> None:
    data = yaml.safe_load((DEPLOY / "config.media.yaml").read_text(encoding="utf-8"))
    assert str(data["render"]["cluster"]).startswith("ray://")
    if "cluster" not in RenderSettings.model_fields:
        pytest.skip("render.cluster is not a setting yet (the render cluster's work, issue 18)")
    settings = load_settings(
        DEPLOY / "config.media.yaml",
        {"cluster": {"node_id": "media-1"}, "access": {"token_secret": _DUMMY_SECRET}},
    )
    assert str(settings.render.cluster).startswith("ray://")


def _kube(kind: str, name: str | None = None) -> dict[str, Any]:
    docs = [
        d
        for path in sorted((DEPLOY / "kuberay").glob("*.yaml"))
        for d in _yaml_documents(path)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(docs) == 1, f"one {kind} {name or ''} in deploy/kuberay"
    return docs[0]


def test_rayservice_has_a_head_and_a_gpu_worker_group() -> None:
    service = _kube("RayService")
    assert service["apiVersion"] == "ray.io/v1"
    cluster = service["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    [group] = cluster["workerGroupSpecs"]
    assert group["rayStartParams"]["num-gpus"] == "1"
    [container] = group["template"]["spec"]["containers"]
    for part in ("requests", "limits"):
        assert container["resources"][part]["nvidia.com/gpu"] == 1
    for spec in (head["template"]["spec"], group["template"]["spec"]):
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get("RAY_USAGE_STATS_ENABLED") == "0", c["name"]
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    [app] = serve["applications"]
    replica = {d["name"]: d for d in app["deployments"]}["RenderReplica"]
    assert replica["ray_actor_options"]["num_gpus"] == 1


def test_media_nodes_manifest_gives_each_pod_a_node_id_and_an_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = _kube("StatefulSet", "avatar-media")
    headless = _kube("Service", nodes["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True  # a full node keeps its calls
    [container] = nodes["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    node_id = env["AVATAR_RTC_CLUSTER__NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert node_id == "metadata.name"
    assert "secretKeyRef" in env["AVATAR_RTC_ACCESS__TOKEN_SECRET"]["valueFrom"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    config = yaml.safe_load(_kube("ConfigMap")["data"]["config.yaml"])
    assert config["cluster"]["node_url"].startswith(
        f"http://{{node}}.{headless['metadata']['name']}:"
    )
    pod = f"{nodes['metadata']['name']}-{nodes['spec']['replicas'] - 1}"
    settings = _settings_from_env(
        monkeypatch,
        config,
        {"AVATAR_RTC_CLUSTER__NODE_ID": pod, "AVATAR_RTC_ACCESS__TOKEN_SECRET": "${S}"},
    )
    assert settings.cluster.node_id == pod


def _serve_config() -> dict[str, Any]:
    if not SERVE_CONFIG.exists():
        pytest.skip("deploy/ray/serve.yaml does not exist yet (the render cluster's work)")
    data: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text(encoding="utf-8"))
    return data


def test_rayservice_embeds_the_serve_config() -> None:
    [ours] = _serve_config()["applications"]
    [embedded] = yaml.safe_load(_kube("RayService")["spec"]["serveConfigV2"])["applications"]
    assert embedded["import_path"] == ours["import_path"]
    assert embedded["name"] == ours["name"]
    names = {d["name"] for d in ours.get("deployments", [])}
    assert {d["name"] for d in embedded["deployments"]} <= names | {"RenderReplica", "RenderLedger"}


def test_serve_config_import_path_is_importable() -> None:
    if importlib.util.find_spec("inference.cluster") is None:
        pytest.skip("inference.cluster does not exist yet (the render cluster's work)")
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed in this environment")
    [embedded] = yaml.safe_load(_kube("RayService")["spec"]["serveConfigV2"])["applications"]
    module_name, _, attr = embedded["import_path"].partition(":")
    module = importlib.import_module(module_name)
    assert getattr(module, attr) is not None, embedded["import_path"]
    for deployment in embedded["deployments"]:
        assert hasattr(module, deployment["name"]), deployment["name"]


def test_deploy_doc_covers_cluster_mode() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for needle in ("compose.cluster.yaml", "rayservice.yaml", "media-nodes.conf", "calls per GPU",
                   "bandwidth", "CPU per", "to be measured", "cluster.node_id"):  # fmt: skip
        assert needle in text, f"docs/deploy.md should mention {needle!r}"
