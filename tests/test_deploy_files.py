"""deploy/: the Kubernetes manifest and compose.yaml are yamllint-clean and well formed,
and their probes ask the right health service (liveness "liveness", readiness "")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy/k8s/leasebroker.yaml"
COMPOSE = ROOT / "deploy/compose.yaml"
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}"
# What a container probe may hold (core/v1 Probe; strict: nothing else).
PROBE_FIELDS = {"exec", "grpc", "httpGet", "tcpSocket", "initialDelaySeconds", "periodSeconds",
                "timeoutSeconds", "successThreshold", "failureThreshold",
                "terminationGracePeriodSeconds"}  # fmt: skip


@pytest.mark.parametrize("path", [MANIFEST, COMPOSE], ids=lambda p: p.name)
def test_yamllint_is_clean(path: Path) -> None:
    pytest.importorskip("yamllint")
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "-s", "-d", YAMLLINT_CONFIG, str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_probes_liveness_and_readiness_apart() -> None:
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service"}
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document)
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    for probe in (liveness, readiness):
        assert set(probe) <= PROBE_FIELDS
        assert set(probe["grpc"]) == {"port", "service"}
        assert probe["grpc"]["port"] == 50051
    assert liveness["grpc"]["service"] == "liveness"
    assert readiness["grpc"]["service"] == ""
    assert all(isinstance(v, str) for v in kinds["ConfigMap"]["data"].values())


def test_compose_runs_the_broker_on_a_redis_with_aof() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == {"redis", "leasebroker"}
    redis, broker = compose["services"]["redis"], compose["services"]["leasebroker"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert set(compose["volumes"]) == {"redis-data"}
    assert broker["environment"]["LEASEBROKER_REDIS_URL"] == "redis://redis:6379/0"
    assert (COMPOSE.parent / broker["build"]["context"] / broker["build"]["dockerfile"]).exists()
    assert broker["ports"] == ["127.0.0.1:50051:50051"]  # never beyond this machine
    assert "redis" in broker["depends_on"]


def test_docker_compose_config_accepts_compose_yaml() -> None:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("docker is not installed")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", ["1.27", "1.29", "1.33"])
def test_the_manifest_is_strict_valid_kubernetes(version: str) -> None:
    """Every resource validates against the Kubernetes schema, rejecting unknown fields
    (kubernetes-validate ships the schemas: no cluster, no network)."""
    import kubernetes_validate

    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, f"{version}.0", strict=True)


def test_compose_yaml_is_a_valid_compose_file() -> None:
    """Docker Compose v2 is not installable here, so the file is checked against the
    Compose Specification by compose-spec's parser (strict: an unknown key fails)."""
    compose_spec = pytest.importorskip("compose_spec")
    compose = compose_spec.PyCompose.from_yaml(COMPOSE.read_text())
    assert compose.validate() is None
    assert set(compose.service_names()) == {"redis", "leasebroker"}
