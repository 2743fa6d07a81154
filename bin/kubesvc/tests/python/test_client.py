"""The official Python client against kubesvc.

Run by tests/python.rs inside the cluster's network namespace, with KUBECONFIG
pointing at it; each test works in a namespace of its own.
"""

import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="session", autouse=True)
def kubeconfig():
    config.load_kube_config()


@pytest.fixture
def ns():
    core = client.CoreV1Api()
    name = "py-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def service(name, labels=None, port=80):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1ServiceSpec(
            selector={"app": name},
            ports=[client.V1ServicePort(name="http", port=port, target_port=8080)],
        ),
    )


def test_crud(ns):
    core = client.CoreV1Api()
    created = core.create_namespaced_service(ns, service("web", {"tier": "front"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.type == "ClusterIP"
    assert created.spec.ports[0].protocol == "TCP"

    read = core.read_namespaced_service("web", ns)
    assert read.metadata.resource_version == created.metadata.resource_version

    read.metadata.labels["tier"] = "back"
    replaced = core.replace_namespaced_service("web", ns, read)
    assert replaced.metadata.labels == {"tier": "back"}
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)

    # A stale resourceVersion is a 409 Conflict.
    read.metadata.labels["tier"] = "stale"
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_service("web", ns, read)
    assert e.value.status == 409

    patched = core.patch_namespaced_service("web", ns, {"spec": {"ports": [{"name": "metrics", "port": 9100}]}})
    assert [p.port for p in patched.spec.ports] == [80, 9100], "strategic merge by port"

    core.delete_namespaced_service("web", ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_service("web", ns)
    assert e.value.status == 404


def test_invalid_objects_are_422_with_causes(ns):
    core = client.CoreV1Api()
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, service("Not_A_Label"))
    assert e.value.status == 422
    import json

    body = json.loads(e.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_list_with_selectors(ns):
    core = client.CoreV1Api()
    for name, tier in [("a", "front"), ("b", "back"), ("c", "back")]:
        core.create_namespaced_service(ns, service(name, {"tier": tier}))
    names = lambda items: sorted(i.metadata.name for i in items)
    assert names(core.list_namespaced_service(ns).items) == ["a", "b", "c"]
    assert names(core.list_namespaced_service(ns, label_selector="tier=back").items) == ["b", "c"]
    assert names(core.list_namespaced_service(ns, label_selector="tier in (front)").items) == ["a"]
    assert names(core.list_namespaced_service(ns, field_selector="metadata.name!=b").items) == ["a", "c"]
    everywhere = core.list_service_for_all_namespaces(label_selector="tier")
    assert {i.metadata.namespace for i in everywhere.items} == {ns}
    page = core.list_namespaced_service(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_service(ns, limit=2, _continue=page.metadata._continue)
    assert names(page.items + rest.items) == ["a", "b", "c"]
    assert not rest.metadata._continue


def test_watch_resumes_from_a_resource_version(ns):
    core = client.CoreV1Api()
    start = core.list_namespaced_service(ns).metadata.resource_version
    core.create_namespaced_service(ns, service("w1"))
    core.patch_namespaced_service("w1", ns, {"metadata": {"labels": {"x": "y"}}})
    middle = core.read_namespaced_service("w1", ns).metadata.resource_version
    core.delete_namespaced_service("w1", ns)

    def events(rv):
        w = watch.Watch()
        seen = []
        for ev in w.stream(core.list_namespaced_service, ns, resource_version=rv, timeout_seconds=3):
            seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if ev["type"] == "DELETED":
                w.stop()
        return seen

    seen = events(start)
    assert [(t, n) for t, n, _ in seen] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    assert [int(rv) for _, _, rv in seen] == sorted(int(rv) for _, _, rv in seen)
    # Resuming from the middle replays only what came after it.
    assert [(t, n) for t, n, _ in events(middle)] == [("DELETED", "w1")]


def test_deployments_scale_and_status(ns):
    apps = client.AppsV1Api()
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    assert scale.status.selector == "app=web"
    now = apps.read_namespaced_deployment("web", ns)
    assert now.spec.replicas == 5 and now.metadata.generation == 2
    # The status subresource changes status and nothing else. The deployment
    # controller writes status too: read, change, write, again on a conflict.
    for _ in range(20):
        now = apps.read_namespaced_deployment("web", ns)
        now.status = client.V1DeploymentStatus(replicas=5, ready_replicas=1, observed_generation=2)
        now.spec.replicas = 1
        try:
            after = apps.replace_namespaced_deployment_status("web", ns, now)
            break
        except ApiException as e:
            assert e.status == 409, e
    assert after.status.ready_replicas == 1
    assert after.spec.replicas == 5


def test_pods(ns):
    core = client.CoreV1Api()
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p", labels={"app": "p"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", command=["sleep", "3600"])]),
    )
    created = core.create_namespaced_pod(ns, pod)
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    assert created.spec.containers[0].termination_message_path == "/dev/termination-log"
    pods = core.list_namespaced_pod(ns, field_selector="status.phase=Pending")
    assert [p.metadata.name for p in pods.items] == ["p"]
    core.delete_namespaced_pod("p", ns)
    assert core.list_namespaced_pod(ns).items == []
