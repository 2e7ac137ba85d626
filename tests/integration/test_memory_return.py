"""Memory a guest frees goes back to the host: the balloon's free page
reporting tells QEMU which pages the guest no longer uses, and QEMU drops
them. Without it, a container that once filled its memory keeps the host's
for as long as it runs."""
from __future__ import annotations

import json
import os
import time

MiB = 2**20


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no Rss for {pid}")


def test_memory_the_guest_frees_leaves_the_host(runv, make_bundle):
    r = runv("run", "-d", "--bundle", make_bundle(["sleep", "600"]), "mret", detached=True)
    assert r.returncode == 0, r.stderr
    try:
        with open(os.path.join(runv.root, "mret", "state.json")) as f:
            qemu = json.load(f)["qemu_pid"]
        r = runv("exec", "mret", "sh", "-c",
                 "dd if=/dev/zero bs=1M count=60 2>/dev/null | tr '\\0' a > /dev/shm/x && rm /dev/shm/x")
        assert r.returncode == 0, r.stderr
        filled = rss(qemu)
        deadline = time.monotonic() + 60  # the guest reports 2 s after it frees, on its own time
        while rss(qemu) > filled - 40 * MiB and time.monotonic() < deadline:
            time.sleep(0.5)
        assert rss(qemu) <= filled - 40 * MiB, f"QEMU keeps {rss(qemu) // MiB} MiB, {filled // MiB} when full"
    finally:
        runv("delete", "-f", "mret")
