#!/usr/bin/env python3
"""The cost of `runv.host.network.setup()` for one veth in a network namespace,
as the shim's forked helper pays it: each run in a fresh Python process.

    bench/network.py [--runs N] [--tree DIR]

Makes two throwaway namespaces (a "ct" holding eth0 with an IPv4 and an IPv6
address and two routes, a "peer" holding the veth's other end), then N times:
a fresh `python -c` inside ct that imports runv.host.network and runs setup()
(timed inside the process: the import of runv.host.network, and setup() with
the imports it makes itself), and another that runs teardown(). Prints the
median and range of those and of the whole process's wall time (interpreter
start and `ip netns exec` included). The shim runs setup() in a fork of itself,
which has runv.host.network and the standard modules it needs loaded already:
there, setup() alone is the cost. DIR picks the runv
tree to import (default: this one), to compare two branches. The namespaces
go at the end, on an error too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = """
import time
t0 = time.perf_counter()
from runv.host import network
t1 = time.perf_counter()
nics = network.setup()
t2 = time.perf_counter()
print(t2 - t0, t2 - t1, len(nics), network.__file__)
"""
TEARDOWN = "from runv.host import network; network.teardown()"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_ns(ns: str, code: str, tree: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": tree}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed runv has its .pyc files
    t = time.perf_counter()
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                       capture_output=True, text=True, env=env, cwd=tree)  # `-c` puts the cwd first on sys.path
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"in {ns}: {r.stderr}")
    return wall, r.stdout


def summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{label}: median {statistics.median(ms):.1f} ms (min {ms[0]:.1f}, max {ms[-1]:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tree", default=HERE)
    args = parser.parse_args()
    ct, peer = f"runv-bct{os.getpid()}", f"runv-bpeer{os.getpid()}"
    ip("netns", "add", ct)
    ip("netns", "add", peer)
    try:
        ip("-n", peer, "link", "add", "veth-peer", "type", "veth", "peer", "name", "eth0", "netns", ct)
        ip("-n", peer, "link", "set", "veth-peer", "up")
        ip("-n", ct, "link", "set", "eth0", "up")
        ip("-n", ct, "addr", "add", "10.213.9.2/24", "dev", "eth0")
        ip("-n", ct, "addr", "add", "fd42:9::2/64", "dev", "eth0", "nodad")
        ip("-n", ct, "route", "add", "default", "via", "10.213.9.1")
        ip("-n", ct, "route", "add", "10.99.0.0/16", "via", "10.213.9.254")
        inside, setups, walls = [], [], []
        for n in range(args.runs + 1):  # the first writes the tree's .pyc files, as an install would have
            wall, out = in_ns(ct, SETUP, args.tree)
            seconds, setup, count, path = out.split()
            assert count == "1" and path.startswith(os.path.abspath(args.tree)), out
            in_ns(ct, TEARDOWN, args.tree)
            if n:
                inside.append(float(seconds))
                setups.append(float(setup))
                walls.append(wall)
        print(f"tree {args.tree}, {args.runs} runs")
        print(summary("import runv.host.network + setup()", inside))
        print(summary("setup() alone (its own imports included)", setups))
        print(summary("whole process (ip netns exec python -c ...)", walls))
    finally:
        subprocess.run(["ip", "netns", "del", ct], capture_output=True)
        subprocess.run(["ip", "netns", "del", peer], capture_output=True)


if __name__ == "__main__":
    main()
