"""How engines mark the containers of a pod in their annotations (containerd's
CRI plugin, CRI-O): the pod's first container (pause) and, in the others, its id."""
from __future__ import annotations

SANDBOX = {"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri-o.ContainerType": "sandbox"}
SANDBOX_ID = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")


def is_pod_sandbox(annotations: dict[str, str]) -> bool:
    """The first container of a pod: it holds the pod's namespaces (and runv's pod VM)."""
    return any(annotations.get(k) == v for k, v in SANDBOX.items())


def sandbox_id(annotations: dict[str, str]) -> str:
    """The id of the pod's first container, as named in one of the pod's other containers."""
    return next((annotations[k] for k in SANDBOX_ID if annotations.get(k)), "")
