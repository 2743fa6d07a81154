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


def eventually(what, check, timeout=60):
    """Polls check() until it returns something truthy (controllers act asynchronously)."""
    import time

    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, "gave up waiting for " + what
        time.sleep(0.05)


def act_as_kubelet(core, ns, pods, ready):
    """Writes the status a kubelet writes for started pods."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    status = "True" if ready else "False"
    for i, p in enumerate(pods):
        ip = "10.250.0.%d" % (i + 2)
        if p.status.pod_ip:
            ip = p.status.pod_ip
        body = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now},
                                          {"type": "ContainersReady", "status": status, "lastTransitionTime": now}]}}
        core.patch_namespaced_pod_status(p.metadata.name, ns, body)


def test_controllers_turn_a_deployment_into_endpoints(ns):
    core, apps, discovery = client.CoreV1Api(), client.AppsV1Api(), client.DiscoveryV1Api()
    node = "py-node-" + ns
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=node),
                                   status=client.V1NodeStatus(capacity={"cpu": "4", "memory": "8Gi", "pods": "110"})))
    core.patch_node_status(node, {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
    try:
        apps.create_namespaced_deployment(ns, client.V1Deployment(
            metadata=client.V1ObjectMeta(name="api"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels={"app": "api"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "api"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(
                        name="c", image="nginx", ports=[client.V1ContainerPort(name="http", container_port=8080)])])))))
        core.create_namespaced_service(ns, client.V1Service(
            metadata=client.V1ObjectMeta(name="api"),
            spec=client.V1ServiceSpec(selector={"app": "api"},
                                      ports=[client.V1ServicePort(name="web", port=80, target_port="http")])))
        # The scheduler binds both pods to the node; we start them as its kubelet would.
        def bound():
            pods = [p for p in core.list_namespaced_pod(ns, label_selector="app=api").items if p.spec.node_name == node]
            return pods if len(pods) == 2 else None

        pods = eventually("2 bound pods", bound)
        act_as_kubelet(core, ns, pods, ready=True)

        def slice_endpoints():
            slices = discovery.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=api").items
            return [e for s in slices for e in (s.endpoints or [])], slices

        def all_ready():
            eps, slices = slice_endpoints()
            return (eps, slices) if len(eps) == 2 and all(e.conditions.ready for e in eps) else None

        eps, slices = eventually("2 ready endpoints", all_ready)
        assert slices[0].ports[0].port == 8080, "the named targetPort resolved from the pod"
        assert slices[0].metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert {e.node_name for e in eps} == {node}
        def available():
            d = apps.read_namespaced_deployment("api", ns)
            return d if d.status.available_replicas == 2 else None

        dep = eventually("2 available", available)
        assert any(c.type == "Available" and c.status == "True" for c in dep.status.conditions)

        # One pod turns unready: its endpoint is no longer ready.
        act_as_kubelet(core, ns, pods[:1], ready=False)
        eventually("1 ready endpoint", lambda: sum(1 for e in slice_endpoints()[0] if e.conditions.ready) == 1)

        # Deleting the deployment takes its pods (we finish their graceful deletion, as the kubelet).
        apps.delete_namespaced_deployment("api", ns, propagation_policy="Background")

        def pods_left():
            left = core.list_namespaced_pod(ns, label_selector="app=api").items
            for p in left:
                if p.metadata.deletion_timestamp:
                    core.delete_namespaced_pod(p.metadata.name, ns, grace_period_seconds=0)
            return not left
        eventually("no pods", pods_left)
        assert apps.list_namespaced_replica_set(ns).items == []
    finally:
        core.delete_node(node)
