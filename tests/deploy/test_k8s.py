"""deploy/k8s/: every manifest is valid for the Kubernetes API (schemas shipped by kubernetes-validate,
strict: unknown fields fail) and keeps the hub's rules (probes, one beat, the one web command)."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
WEB_COMMAND = ["gunicorn", "-c", "config/gunicorn.conf.py", "config.asgi:application"]


def _documents():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue  # kustomize's own file, not an API object
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append(pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"))
    return docs


def _by_kind_and_name():
    return {(d.values[0]["kind"], d.values[0]["metadata"]["name"]): d.values[0] for d in _documents()}


@pytest.mark.parametrize("doc", _documents())
def test_every_manifest_is_valid_for_the_kubernetes_api(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field():
    bad = yaml.safe_load((K8S / "beat.yaml").read_text())
    bad["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_files_that_exist():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def _container(objects, name):
    return objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]


def test_web_runs_the_one_command_with_liveness_healthz_and_readiness_readyz():
    web = _container(_by_kind_and_name(), "hub-web")
    assert web["command"] == WEB_COMMAND
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The kubelet's Host would be the pod IP, which ALLOWED_HOSTS refuses.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] == "hub.example.com"


def test_beat_is_a_single_replica_that_never_overlaps_itself():
    beat = _by_kind_and_name()[("Deployment", "hub-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert not any(kind == "HorizontalPodAutoscaler" and "beat" in name for kind, name in _by_kind_and_name())


def test_worker_and_beat_run_celery_with_a_liveness_check():
    objects = _by_kind_and_name()
    for name, role in (("hub-worker", "worker"), ("hub-beat", "beat")):
        container = _container(objects, name)
        assert container["command"][:4] == ["celery", "-A", "config", role]
        assert container["livenessProbe"]["exec"]["command"] == ["python", "scripts/healthcheck.py", role]


def test_every_pod_runs_as_the_image_user_without_privileges():
    objects = _by_kind_and_name()
    workloads = [o for (kind, _), o in objects.items() if kind in {"Deployment", "Job"}]
    assert len(workloads) == 4
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's `hub` user
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_migrations_run_as_a_job_not_inside_the_web_pods():
    objects = _by_kind_and_name()
    job = objects[("Job", "hub-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert "migrate" not in " ".join(_container(objects, "hub-web")["command"])
