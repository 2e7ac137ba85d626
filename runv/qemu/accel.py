"""Choose QEMU's accelerator: KVM only where a real probe boot works, TCG otherwise.

/dev/kvm alone proves nothing: a software-nested KVM (PVM) is present on some
hosts and cannot boot our guest. The decision is cached per boot of the host
and per kernel, so only the first container on a host pays for a probe.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass

from runv.files import write_atomic
from runv.qemu.assets import Assets

CACHE = os.path.join(os.environ.get("RUNV_CACHE", "/var/cache/runv"), "accel.json")
PROBE_MARK = "runv-probe-ok"
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Choice:
    accel: str
    reason: str


def choose(assets: Assets) -> Choice:
    forced = os.environ.get("RUNV_ACCEL")
    if forced in ("kvm", "tcg"):
        return Choice(forced, "set by RUNV_ACCEL")
    key = _cache_key(assets)
    cached = _read_cache(key)
    if cached:
        return cached
    choice = _decide(assets)
    _write_cache(key, choice)
    return choice


def _decide(assets: Assets) -> Choice:
    if not os.path.exists("/dev/kvm"):
        return Choice("tcg", "/dev/kvm does not exist")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return Choice("tcg", f"/dev/kvm cannot be opened: {e.strerror}")
    if os.path.exists("/sys/module/kvm_pvm"):
        return Choice("tcg", "/dev/kvm is PVM (software nested virtualisation), "
                             "which cannot run the guest kernel")
    ok, detail = probe(assets, "kvm")
    if ok:
        return Choice("kvm", "a probe boot under KVM succeeded")
    return Choice("tcg", f"a probe boot under KVM failed: {detail}")


def probe(assets: Assets, accel: str) -> tuple[bool, str]:
    """Boot the guest to its agent and straight down again."""
    from runv.qemu.cmdline import KERNEL_ARGS, Console, Machine

    with tempfile.TemporaryDirectory(prefix="runv-probe-") as tmp:
        console = os.path.join(tmp, "console.log")
        m = Machine(assets.qemu, assets.kernel, assets.initrd, accel=accel,
                    kernel_args=KERNEL_ARGS + " runv.probe=1", devices=[Console(console)])
        try:
            r = subprocess.run(m.argv(), stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, f"no answer within {PROBE_TIMEOUT:.0f} s"
        with open(console, errors="replace") as f:
            out = f.read()
        if PROBE_MARK in out:
            return True, ""
        last = (r.stderr.decode(errors="replace").strip() or out.strip()).splitlines()
        return False, last[-1] if last else f"qemu exited with {r.returncode}"


def _cache_key(assets: Assets) -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        st = os.stat(assets.kernel)
        return f"{boot}:{assets.kernel}:{st.st_mtime_ns}:{assets.qemu}"
    except OSError:
        return ""


def _read_cache(key: str) -> Choice | None:
    try:
        with open(CACHE) as f:
            data = json.load(f)
        if key and data.get("key") == key:
            return Choice(data["accel"], data["reason"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def _write_cache(key: str, choice: Choice) -> None:
    if not key:
        return
    try:
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        write_atomic(CACHE, json.dumps({"key": key, **asdict(choice)}))
    except OSError:
        pass
