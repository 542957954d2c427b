"""The kustomize base and each county's overlay (deploy/k8s), rendered by `kubectl kustomize` and
checked object by object. No Kubernetes schema validator is within reach to pin (kubernetes-validate
is not among the packages this project's registries offer; check-jsonschema carries no Kubernetes
schemas, and vendoring them would add megabytes of generated JSON), so the checks below cover the
fields Minqing relies on: apiVersion/kind/metadata of every object, DNS-1123 names, valid container specs (name,
image, envFrom/volume references that resolve), selectors matching their Pods, Services pointing
at declared ports, the restricted Pod security the namespaces enforce."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.metrics import ROOT

K8S = ROOT / "deploy" / "k8s"
COUNTIES = ["longjiang", "ziyang", "luyang"]
KUBECTL = shutil.which("kubectl")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KNOWN = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
         ("networking.k8s.io/v1", "Ingress"), ("postgresql.cnpg.io/v1", "Cluster"),
         ("rabbitmq.com/v1beta1", "RabbitmqCluster")}


def _render(county: str) -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl (with kustomize) not installed: overlays not rendered; test_manifests_parse still ran")
    result = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / county)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_manifests_parse():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 5 + 3 * 3
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc and doc.get("apiVersion") and doc.get("kind"), path


def _check_container(c: dict, volumes: set[str], configmaps: set[str], where: str) -> None:
    assert DNS1123.match(c["name"]) and len(c["name"]) <= 63, where
    assert isinstance(c["image"], str) and c["image"], where
    for key in ("command", "args"):
        assert all(isinstance(a, str) for a in c.get(key, [])), f"{where}: {key} must be strings"
    for ref in c.get("envFrom", []):
        assert ref["configMapRef"]["name"] in configmaps, f"{where}: envFrom names an unrendered ConfigMap"
    for mount in c.get("volumeMounts", []):
        assert mount["name"] in volumes and mount["mountPath"].startswith("/"), where
    ports = {p["name"] for p in c.get("ports", [])}
    for probe in ("readinessProbe", "livenessProbe"):
        if probe in c:
            port = next(iter(v for v in c[probe].values() if isinstance(v, dict)))["port"]
            assert isinstance(port, int) or port in ports, f"{where}: {probe} port"
    sc = c.get("securityContext", {})
    assert sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("county", COUNTIES)
def test_overlay_renders_valid_objects(county):
    objects = _render(county)
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert kinds == KNOWN, kinds ^ KNOWN
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    for o in objects:
        meta = o["metadata"]
        assert DNS1123.match(meta["name"]), meta
        if o["kind"] != "Namespace":
            assert meta["namespace"] == f"minqing-{county}", meta
        assert meta["labels"]["minqing.cn/county"] == county
    env = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("minqing-env"))
    assert env["data"]["MINQING_COUNTY"] == county and env["data"]["MINQING_DATABASE_URL_FILE"].startswith("/run/secrets/")
    assert not any(k in env["data"] for k in ("MINQING_DATABASE_URL", "MINQING_AMQP_URI", "MINQING_VAULT_KEY"))

    dep = next(o for o in objects if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"   # one relay, one sweep
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"] for v in spec["volumes"]}
    for v in spec["volumes"]:
        if "configMap" in v:
            assert v["configMap"]["name"] in configmaps
    names = [c["name"] for c in spec["containers"]]
    assert sorted(names) == sorted(["gateway", "relay", "intake", "routing", "notify", "assessment", "console",
                                    "exporter", "door"])
    for c in spec["initContainers"] + spec["containers"]:
        _check_container(c, volumes, configmaps, f"{county}/{c['name']}")
    services = {c["name"]: c["args"] for c in spec["containers"] if c.get("args", [])[:1] == ["service"]}
    assert services == {n: ["service", n] for n in ("intake", "routing", "notify", "assessment", "console")}
    assert all("command" not in c for c in spec["containers"] if c["name"] in services)   # the image's `minqing`
    door_ports = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}

    svc = next(o for o in objects if o["kind"] == "Service")
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= door_ports

    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == f"minqing.{county}.example.invalid"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "64k"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] == "http"
    ns = next(o for o in objects if o["kind"] == "Namespace")
    assert ns["metadata"]["name"] == f"minqing-{county}"


def test_the_door_config_keeps_metrics_off_the_api_port():
    door = (K8S / "base" / "door.conf").read_text()
    api = door.split("server {")[1]
    assert "listen 8080" in api and "location /metrics { return 404; }" in api and "client_max_body_size 64k" in api
