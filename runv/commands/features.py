"""runv features: what this runtime supports, as JSON (runtime-spec features.md)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import json

    from runv import OCI_VERSION
    from runv.agent.records import MOUNT_FLAGS, NAMESPACE_FLAGS, PROPAGATION

    print(json.dumps({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "mountOptions": sorted([*MOUNT_FLAGS, *PROPAGATION]),
        "linux": {
            "namespaces": sorted([*NAMESPACE_FLAGS, "network"]),
            "cgroup": {"v1": False, "v2": True},
        },
        "annotations": {
            "io.github.runv.vm": "every container runs in its own QEMU microVM",
            "io.github.runv.update": "runv update changes memory, cpu, pids and blkio limits live "
                                     "(guest and host cgroups); the VM's memory follows through a balloon "
                                     "up to its RAM at boot, its vCPUs do not change",
            "io.github.runv.memory.max": "bytes of RAM the VM boots with, for runv update to grow into "
                                         "(default: twice the guest's memory)",
        },
    }, indent=2))
    return 0
