"""runv update [flags] ID: change a running container's resources, as runc's
update (docker update, ctr task update, CRI UpdateContainerResources)."""
from __future__ import annotations

import argparse
import re
from typing import Any

# flag -> (section, field, kind)
FLAGS: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "limit", "size"),
    "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"),
    "kernel-memory": ("memory", "kernel", "size"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "size"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "pids-limit": ("pids", "limit", "int"),
    "blkio-weight": ("blockIO", "weight", "uint"),
}
IGNORED = ("kernel", "kernelTCP")  # deprecated, and ignored by runc's update too
REFUSED = ("l3-cache-schema", "mem-bw-schema")  # Intel RDT: the host's caches, not the VM's
SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)i?b?", re.I)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("-r", "--resources", default=None,
                   help="a linux.resources JSON file to read the new limits from ('-' for stdin)")
    for flag in FLAGS:
        names = [f"--{flag}", "--cpu-shares"] if flag == "cpu-share" else [f"--{flag}"]
        p.add_argument(*names, dest=flag.replace("-", "_"), default=None, metavar="VALUE")
    for flag in REFUSED:
        p.add_argument(f"--{flag}", dest=flag.replace("-", "_"), default=None, metavar="VALUE")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container
    from runv.oci.cgroup_check import check

    change = from_file(args.resources) if args.resources is not None else from_flags(vars(args))
    check(change)
    Container.load(args.root, args.id).update(change)
    return 0


def from_file(path: str) -> dict[str, Any]:
    """linux.resources from a file or stdin, as `runc update -r` reads it."""
    import json
    import sys

    from runv.errors import InvalidArgument

    try:
        if path == "-":
            data = json.load(sys.stdin)
        else:
            with open(path) as f:
                data = json.load(f)
    except OSError as e:
        raise InvalidArgument(f"open {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidArgument(f"decode resources from {path}: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"decode resources from {path}: not a JSON object")
    return data


def from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """linux.resources from runc's update flags (only those given)."""
    from runv.errors import InvalidArgument

    for flag in REFUSED:
        if flags.get(flag.replace("-", "_")) is not None:
            raise InvalidArgument(f"--{flag}: Intel RDT is not supported: the container runs in a VM")
    change: dict[str, dict[str, Any]] = {}
    given = False
    for flag, (section, field, kind) in FLAGS.items():
        text = flags.get(flag.replace("-", "_"))
        if text is None or text == "" and kind != "str":
            continue
        given = True
        value = parse_value(flag, text, kind)
        if field in IGNORED:
            from runv import log

            log.write("warning", f"--{flag} is deprecated and ignored")
        else:
            change.setdefault(section, {})[field] = value
    if not given:
        raise InvalidArgument("no resources to update: give -r FILE or a flag such as --memory")
    return change


def parse_value(flag: str, text: str, kind: str) -> int | str:
    from runv.errors import InvalidArgument

    if kind == "str":
        return text
    if kind == "size":
        if text == "-1":
            return -1
        m = SIZE.fullmatch(text)
        if not m:
            raise InvalidArgument(f"invalid value for {flag}: {text!r} is not a size such as 300m")
        scale = 1024 ** ("kmgtp".find(m.group(2).lower()) + 1) if m.group(2) else 1
        value = int(float(m.group(1)) * scale)
        if value >= 2**63:
            raise InvalidArgument(f"invalid value for {flag}: {text!r} is too large")
        return value
    if not re.fullmatch(r"-?[0-9]+" if kind == "int" else r"[0-9]+", text):
        raise InvalidArgument(f"invalid value for {flag}: {text!r} is not "
                              f"{'an integer' if kind == 'int' else 'an unsigned integer'}")
    return int(text)
