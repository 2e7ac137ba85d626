#!/usr/bin/env python3
"""Make an OCI bundle with a busybox rootfs (from Debian's busybox-static).

    mkbundle.py DIR [-- ARGS...]

The config is runv's default spec (as `runv spec` writes it) with
process.terminal off and process.args set to ARGS (default: sh).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"


def make_rootfs(rootfs: str) -> None:
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "var", "run", "usr/bin"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    for name in applets.split():
        link = os.path.join(rootfs, "bin", name)
        if not os.path.lexists(link) and name != "busybox":
            os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


def make_bundle(bundle: str, args: list[str] | None = None, **process: object) -> str:
    from runv.oci.default_spec import default_config

    os.makedirs(bundle, exist_ok=True)
    make_rootfs(os.path.join(bundle, "rootfs"))
    config = default_config()
    config["process"]["terminal"] = False
    config["process"]["args"] = args or ["sh"]
    config["process"].update(process)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle


if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv:
        sys.exit(__doc__)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    make_bundle(argv[0], rest or None)
