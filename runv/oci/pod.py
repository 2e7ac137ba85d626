"""Pods: which containers' VMs take a pod's next containers, and how engines
mark a pod's containers in their annotations (containerd's CRI plugin, CRI-O's
names, which Podman uses too)."""
from __future__ import annotations

SANDBOX = {"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri-o.ContainerType": "sandbox"}
SANDBOX_ID = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")


def holds_pod(annotations: dict[str, str], own_network_namespace: bool) -> bool:
    """Whether the container's VM can take the containers that join its network
    namespace (runv.member): a pod's first container by the annotations, and any
    container with a network namespace of its own, since others may join it
    unannounced: Podman's infra container carries no annotation that says it
    is one, and `docker run --network container:<id>` may name any container.
    The cost is the pod share (runv.qemu.podshare) in each such VM."""
    return is_pod_sandbox(annotations) or own_network_namespace


def is_pod_sandbox(annotations: dict[str, str]) -> bool:
    """The first container of a pod: it holds the pod's namespaces (and runv's pod VM)."""
    return any(annotations.get(k) == v for k, v in SANDBOX.items())


def sandbox_id(annotations: dict[str, str]) -> str:
    """The id of the pod's first container, as named in one of the pod's other containers."""
    return next((annotations[k] for k in SANDBOX_ID if annotations.get(k)), "")
