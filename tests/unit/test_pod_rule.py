"""Which containers' VMs take the containers that join their network namespace (runv.oci.pod)."""
from __future__ import annotations

from runv.oci.pod import holds_pod, sandbox_id

CRI_SANDBOX = {"io.kubernetes.cri.container-type": "sandbox"}
# Podman 4.3's infra container (measured): no annotation says what it is.
PODMAN_INFRA = {"io.container.manager": "libpod", "io.kubernetes.cri-o.TTY": "false"}
PODMAN_MEMBER = {"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerType": "container",
                 "io.kubernetes.cri-o.SandboxID": "48d3cc98"}


def test_a_network_namespace_of_its_own_makes_a_pod_whatever_the_annotations():
    assert holds_pod({}, own_network_namespace=True)                # docker's, `runv run`'s
    assert holds_pod(PODMAN_INFRA, own_network_namespace=True)
    assert holds_pod(CRI_SANDBOX, own_network_namespace=True)


def test_without_one_only_a_pod_sandbox_does():
    """The host's network (`--network host`): nobody joins the VM by its namespace."""
    assert not holds_pod({}, own_network_namespace=False)
    assert not holds_pod(PODMAN_INFRA, own_network_namespace=False)
    assert holds_pod(CRI_SANDBOX, own_network_namespace=False)


def test_podmans_members_name_their_infra_container_as_cri_o_does():
    assert sandbox_id(PODMAN_MEMBER) == "48d3cc98"
