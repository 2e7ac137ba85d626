#!/usr/bin/env python3
"""Boot against restore from a template: QEMU launch to the agent's READY, the
median of N of each (interleaved), the template's size and what making it costs.

    bench/templates.py [--runs N]

Uses the guest built from this tree (kernel/build-*.sh) and a throw-away
template cache, so it neither needs nor touches an installed runv.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def build(script: str) -> str:
    return subprocess.run([os.path.join(REPO, "kernel", script)], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    kernel, initrd = build("build-kernel.sh"), build("build-initramfs.sh")
    work = tempfile.mkdtemp(prefix="runv-bench-templates-")
    os.environ["RUNV_CACHE"] = os.path.join(work, "cache")  # after the builds: theirs is the real cache

    from runv.agent import protocol as P
    from runv.qemu import template
    from runv.qemu import vm as qemu_vm
    from runv.qemu.accel import choose
    from runv.qemu.assets import Assets
    from runv.qemu.cmdline import Machine, Share

    qemu = shutil.which("qemu-system-x86_64") or ""
    accel = choose(Assets(qemu, kernel, initrd)).accel
    share = os.path.join(work, "share")
    os.mkdir(share)

    def machine() -> Machine:
        return Machine(qemu, kernel, initrd, accel=accel, devices=[Share(P.SHARE_ROOT_TAG, share)])

    try:
        makes = []
        for _ in range(3):
            shutil.rmtree(template.root(), ignore_errors=True)
            t = time.monotonic()
            path = template.ensure(machine(), retry=True)
            makes.append(time.monotonic() - t)
            if not path:
                print("making the template failed:", os.listdir(template.root()))
                return 1
        with open(os.path.join(os.path.dirname(path), "meta.json")) as f:
            meta = json.load(f)
        times: dict[str, list[float]] = {"boot": [], "restore": []}
        for _ in range(args.runs):
            for kind in times:
                state_dir = tempfile.mkdtemp(dir=work)
                t = time.monotonic()
                if kind == "boot":
                    vm = qemu_vm.launch(machine(), P.PORT_NAME, state_dir)
                else:
                    vm = template.restore(machine(), path, P.PORT_NAME, state_dir)
                f = template._await_frame(vm, P.Decoder(), 60)
                times[kind].append(time.monotonic() - t)
                vm.kill()
                vm.agent.close()
                vm.qmp.close()
                os.close(vm.pidfd)
                assert f.type == P.Msg.READY, f
        print(f"accelerator: {accel}")
        for kind, v in times.items():
            print(f"launch to READY, {kind:8} median {statistics.median(v) * 1000:5.0f} ms "
                  f"(min {min(v) * 1000:.0f}, max {max(v) * 1000:.0f}, n={len(v)})")
        print(f"template: {meta['size'] / 1e6:.1f} MB, made in {statistics.median(makes):.2f} s "
              f"(boot {meta['boot_s']} s, save {meta['save_s']} s, checking restore {meta['restore_s']} s)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
