"""Deployment files that cannot be built here (no Docker engine): checked statically.

The Grafana dashboard may only query metrics that ``signaling.metrics.Metrics`` registers
(with their labels) and must show every one of them; compose.yaml must reserve a GPU, limit
resources and wire its healthcheck to /health/ready; the Dockerfile must be multi-stage,
run as a non-root user, have a HEALTHCHECK on /health/live and a CMD, and copy only files
that exist and that .dockerignore lets into the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from signaling.config import load_settings
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
