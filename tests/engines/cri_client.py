"""A small client for Kubernetes' CRI runtime service (runtime.v1), over gRPC.

The messages are the subset in cri_proto/api.proto (upstream's names and field
numbers), compiled with grpcio-tools on first use into a directory of the
caller's choosing, so that no generated code, tied to one protobuf version, is
committed. `Cri` wraps the calls the tests make; `pb` is the generated module
for building requests.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "cri_proto")
CALL_TIMEOUT = 120   # one CRI call; RunPodSandbox boots a VM under TCG


def compile_proto(out_dir: str) -> tuple[Any, Any]:
    """(api_pb2, api_pb2_grpc), generated into out_dir and imported from there."""
    from grpc_tools import protoc

    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(os.path.join(out_dir, "api_pb2_grpc.py")):
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", os.path.join(PROTO_DIR, "api.proto")])
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) on {PROTO_DIR}/api.proto")
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


class Cri:
    """The CRI runtime service at a unix socket."""

    def __init__(self, socket: str, gen_dir: str):
        import grpc

        self.pb, grpc_mod = compile_proto(gen_dir)
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = grpc_mod.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, name: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        return getattr(self.stub, name)(request, timeout=timeout)

    # -- calls

    def version(self, timeout: float = CALL_TIMEOUT) -> Any:
        return self._call("Version", self.pb.VersionRequest(version="v1"), timeout)

    def run_pod(self, config: Any, handler: str) -> str:
        r = self._call("RunPodSandbox", self.pb.RunPodSandboxRequest(config=config, runtime_handler=handler))
        return r.pod_sandbox_id

    def pod_status(self, pod_id: str) -> Any:
        return self._call("PodSandboxStatus", self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status

    def pods(self) -> list[Any]:
        return list(self._call("ListPodSandbox", self.pb.ListPodSandboxRequest()).items)

    def stop_pod(self, pod_id: str) -> None:
        self._call("StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_pod(self, pod_id: str) -> None:
        self._call("RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    def create_container(self, pod_id: str, config: Any, pod_config: Any) -> str:
        r = self._call("CreateContainer", self.pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config))
        return r.container_id

    def start_container(self, cid: str) -> None:
        self._call("StartContainer", self.pb.StartContainerRequest(container_id=cid))

    def stop_container(self, cid: str, timeout: int = 0) -> None:
        self._call("StopContainer", self.pb.StopContainerRequest(container_id=cid, timeout=timeout))

    def remove_container(self, cid: str) -> None:
        self._call("RemoveContainer", self.pb.RemoveContainerRequest(container_id=cid))

    def container_status(self, cid: str) -> Any:
        return self._call("ContainerStatus", self.pb.ContainerStatusRequest(container_id=cid)).status

    def containers(self, pod_id: str = "") -> list[Any]:
        f = self.pb.ContainerFilter(pod_sandbox_id=pod_id)
        return list(self._call("ListContainers", self.pb.ListContainersRequest(filter=f)).containers)

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 60) -> ExecResult:
        r = self._call("ExecSync", self.pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                       timeout + CALL_TIMEOUT)
        return ExecResult(r.exit_code, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))

    # -- configs

    def pod_config(self, name: str, uid: str, hostname: str, log_directory: str,
                   cgroup_parent: str, namespace: str = "runv-test") -> Any:
        pb = self.pb
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            hostname=hostname, log_directory=log_directory,
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent))

    def container_config(self, name: str, image: str, command: list[str], log_path: str) -> Any:
        pb = self.pb
        return pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                                  image=pb.ImageSpec(image=image), command=command, log_path=log_path)
