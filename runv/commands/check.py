"""runv check [--format text|json]: can this host run runv VMs, and how?"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="text", choices=["text", "json"])


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from runv.qemu import assets
    from runv.qemu.accel import choose

    a = assets.find()
    problems = []
    if not a.qemu:
        problems.append("qemu-system-x86_64 not found (install qemu-system-x86)")
    for what, path in (("kernel", a.kernel), ("initramfs", a.initrd)):
        if not os.path.isfile(path):
            problems.append(f"{what} {path} not found (run 'make install')")
    accel = choose(a) if not problems else None
    report = {
        "ok": not problems,
        "accelerator": accel.accel if accel else None,
        "reason": accel.reason if accel else "; ".join(problems),
        "qemu": a.qemu or None,
        "kernel": a.kernel,
        "initramfs": a.initrd,
        "problems": problems,
    }
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(f"runv can run VMs here: {'yes' if report['ok'] else 'no'}")
        if accel:
            print(f"accelerator: {accel.accel} ({accel.reason})")
        print(f"qemu: {report['qemu'] or 'not found'}")
        print(f"kernel: {a.kernel}")
        print(f"initramfs: {a.initrd}")
        for p in problems:
            print(f"problem: {p}")
    return 0 if report["ok"] else 1
