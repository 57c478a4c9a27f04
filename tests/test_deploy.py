"""The deployment manifests in deploy/ are valid Kubernetes objects."""

from pathlib import Path

import yaml

from tests.kube_schemas import validate_builtin

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_kubernetes_manifests_validate():
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service", "ServiceAccount", "ClusterRole",
                                        "ClusterRoleBinding"}
    for doc in docs:
        assert validate_builtin(doc) == [], doc["metadata"]["name"]


def test_settings_in_the_configmap_load():
    from modelherd.settings import Settings

    [config] = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d and d["kind"] == "ConfigMap"]
    settings = Settings(**yaml.safe_load(config["data"]["settings.yaml"]))
    assert settings.clusters["onprem-a"].in_cluster
