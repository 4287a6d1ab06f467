"""The Kubernetes manifests (``deploy/kubernetes``): valid against the Kubernetes schema, offline, and
true to the gateway they run — probe paths it answers, the port it listens on, variables it reads
and documents, files where its settings look, and a grace period that covers its shutdown."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes_validate.utils import latest_version, validate

from proxy_core.app import create_app
from proxy_core.config_files import ApiKey, ModelCatalog, SecretsFile, parse_secrets
from proxy_core.production import production_problems
from proxy_core.settings import Settings
from tests.deploy.kustomize import Document, render

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = sorted(path.parent.relative_to(KUBERNETES) for path in KUBERNETES.rglob("kustomization.yaml"))
# The oldest Kubernetes release still supported upstream when this was written, and the newest the validator has.
KUBERNETES_VERSIONS = ("1.31.0", latest_version())
# Variables the Deployment may set that are not the gateway's settings: what LiteLLM reads.
STANDARD_VARIABLES = {"OPENAI_API_KEY"}
DOCUMENTATION = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Where every variable of the gateway's is described: the README's table or the reference page.
CONFIGURATION_REFERENCE = [ROOT / "README.md", ROOT / "docs" / "configuration.md"]

each_kustomization = pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=str)


@functools.cache
def rendered(kustomization: Path) -> tuple[Document, ...]:
    return tuple(render(KUBERNETES / kustomization))


def the(kind: str, kustomization: Path) -> Document:
    (document,) = (d for d in rendered(kustomization) if d["kind"] == kind)
    return document


def gateway_container(kustomization: Path) -> dict[str, Any]:
    (container,) = the("Deployment", kustomization)["spec"]["template"]["spec"]["containers"]
    return container


def environment(kustomization: Path) -> dict[str, str]:
    """The container's variables, with a Secret reference resolved from the rendered Secret."""
    secret = the("Secret", kustomization)["stringData"]
    values = {}
    for variable in gateway_container(kustomization)["env"]:
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret_name(kustomization)
            values[variable["name"]] = secret[reference["key"]]
    return values


def secret_name(kustomization: Path) -> str:
    return str(the("Secret", kustomization)["metadata"]["name"])


def test_there_are_a_base_and_overlays() -> None:
    assert [Path("base"), Path("overlays/aws-secrets-manager")] == KUSTOMIZATIONS


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@each_kustomization
def test_the_renderer_renders_as_kubectl_does(kustomization: Path) -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / kustomization)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    by_kubectl = sorted(yaml.safe_load_all(output), key=lambda d: (d["kind"], d["metadata"]["name"]))
    assert sorted(rendered(kustomization), key=lambda d: (d["kind"], d["metadata"]["name"])) == by_kubectl


@each_kustomization
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_is_valid_kubernetes(kustomization: Path, version: str) -> None:
    for document in rendered(kustomization):
        validate(document, version, strict=True)


def test_the_validator_refuses_what_kubernetes_would() -> None:
    deployment = the("Deployment", Path("base"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(Exception, match="'two' is not of type 'integer'"):
        validate(broken, latest_version(), strict=True)
    misspelt = {**container, "readinessProbes": container["readinessProbe"]}
    template = {**deployment["spec"]["template"], "spec": {"containers": [misspelt]}}
    with pytest.raises(Exception, match="readinessProbes"):
        validate({**deployment, "spec": {**deployment["spec"], "template": template}}, latest_version(), strict=True)


@each_kustomization
def test_the_parts_select_the_gateways_pods(kustomization: Path) -> None:
    kinds = sorted(d["kind"] for d in rendered(kustomization))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )
    deployment = the("Deployment", kustomization)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert the("Service", kustomization)["spec"]["selector"].items() <= labels.items()
    assert the("PodDisruptionBudget", kustomization)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = the("HorizontalPodAutoscaler", kustomization)["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == the("ServiceAccount", kustomization)["metadata"]["name"]
    )


@each_kustomization
def test_probes_and_service_reach_the_port_the_gateway_listens_on(kustomization: Path) -> None:
    container = gateway_container(kustomization)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listens_on = Settings(port=environment(kustomization)["PORT"], catalog=ModelCatalog()).port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == listens_on
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    (service_port,) = the("Service", kustomization)["spec"]["ports"]
    assert ports[service_port["targetPort"]] == listens_on


def test_the_gateway_answers_the_probes_paths() -> None:
    container = gateway_container(Path("base"))
    paths = {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    app = create_app(Settings(secrets=SecretsFile(), catalog=ModelCatalog.embedded_default()))
    with TestClient(app) as client:
        answers = {path: client.get(path).status_code for path in sorted(paths)}
        assert client.get("/not-a-probe").status_code == 404
    assert answers == {"/health": 200, "/ready": 200}


@each_kustomization
def test_every_variable_is_a_setting_or_standard_and_documented(kustomization: Path) -> None:
    reference = "\n".join(path.read_text() for path in CONFIGURATION_REFERENCE if path.is_file())
    documentation = "\n".join(path.read_text() for path in DOCUMENTATION)
    for name in environment(kustomization):
        if name in STANDARD_VARIABLES:
            assert re.search(rf"\b{name}\b", documentation), f"{name} is not in README.md or docs/"
        else:
            assert name.lower() in Settings.model_fields, f"{name} is not a setting of the gateway"
            assert f"`{name}`" in reference, f"{name} is not in the configuration reference"


@each_kustomization
def test_the_values_are_valid_settings(kustomization: Path) -> None:
    """Every value the Deployment sets passes the gateway's own validation (the files it names
    are checked below: they exist only in the pod)."""
    values = {
        name.lower(): value
        for name, value in environment(kustomization).items()
        if name not in STANDARD_VARIABLES | {"SECRETS_PATH", "GATEWAY_CONFIG"}
    }
    api_key = ApiKey(key="gw-a-real-looking-key-4c1f0b8e", projects=("*",))  # type: ignore[arg-type]
    settings = Settings(**values, secrets=SecretsFile(api_keys=(api_key,)), catalog=ModelCatalog())
    assert settings.environment == "production"
    assert settings.redis_enabled


@each_kustomization
def test_the_files_are_mounted_where_the_settings_look(kustomization: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(kustomization)
    pod = the("Deployment", kustomization)["spec"]["template"]["spec"]
    mounts = {mount["mountPath"]: mount["name"] for mount in gateway_container(kustomization)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    config = Path(env["GATEWAY_CONFIG"])
    config_map = volumes[mounts[str(config.parent)]]["configMap"]["name"]
    assert config_map == the("ConfigMap", kustomization)["metadata"]["name"]
    for name in STANDARD_VARIABLES:
        monkeypatch.setenv(name, env[name])
    ModelCatalog.model_validate(yaml.safe_load(the("ConfigMap", kustomization)["data"][config.name]))

    if env.get("SECRETS_SOURCE") == "aws-secretsmanager":
        assert "SECRETS_PATH" not in env
        assert "/etc/proxy-core/secrets" not in mounts
        assert "secrets.yaml" not in the("Secret", kustomization)["stringData"]
        return
    secrets = Path(env["SECRETS_PATH"])
    volume = volumes[mounts[str(secrets.parent)]]["secret"]
    assert volume["secretName"] == secret_name(kustomization)
    assert {"key": secrets.name, "path": secrets.name} in volume["items"]
    template = parse_secrets(the("Secret", kustomization)["stringData"][secrets.name], "the Secret template")
    assert production_problems(template, ModelCatalog()) == [
        "gateway API key 'eval-team' is a placeholder",
        "the Langfuse keys of project 'my-project' are placeholders",
    ]


def sleep_seconds(container: dict[str, Any]) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@each_kustomization
def test_the_grace_period_covers_the_shutdown_budget(kustomization: Path) -> None:
    container = gateway_container(kustomization)
    env = environment(kustomization)
    drain = float(env["GRACEFUL_SHUTDOWN_TIMEOUT_S"])
    flush = float(env["SHUTDOWN_FLUSH_TIMEOUT_S"])
    grace = the("Deployment", kustomization)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= sleep_seconds(container) + drain + flush + 5


def test_the_shutdown_budget_is_the_gateways_own() -> None:
    """The manifest states the gateway's defaults explicitly; when they change, so must it."""
    env = environment(Path("base"))
    defaults = Settings.model_fields
    assert float(env["GRACEFUL_SHUTDOWN_TIMEOUT_S"]) == defaults["graceful_shutdown_timeout_s"].default
    assert float(env["SHUTDOWN_FLUSH_TIMEOUT_S"]) == defaults["shutdown_flush_timeout_s"].default


@each_kustomization
def test_resources_and_security_context(kustomization: Path) -> None:
    pod = the("Deployment", kustomization)["spec"]["template"]["spec"]
    container = gateway_container(kustomization)
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    image_user = re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile.gateway").read_text())
    assert image_user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(image_user.group(1))
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    assert writable == {"/tmp"}
