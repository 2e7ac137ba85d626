"""Generate runv/oci/syscall_table.py from the kernel's uapi headers (linux-libc-dev).

Run once when the headers change, and commit the output; runv never parses
headers at run time:

    python3 runv/oci/_gen_syscall_table.py > runv/oci/syscall_table.py
"""
from __future__ import annotations

import re
import subprocess
import sys

HEADERS = {
    "X86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
    "X86": "/usr/include/x86_64-linux-gnu/asm/unistd_32.h",
    "X32": "/usr/include/x86_64-linux-gnu/asm/unistd_x32.h",
}
X32_SYSCALL_BIT = 0x40000000


def parse(path: str) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"#define __NR_(\w+)\s+(?:\(__X32_SYSCALL_BIT \+ )?(\d+)\)?\s*$", line)
            if m:
                bit = X32_SYSCALL_BIT if "__X32_SYSCALL_BIT" in line else 0
                out[m.group(1)] = bit | int(m.group(2))
    return out


def main() -> None:
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "linux-libc-dev"],
                                 capture_output=True, text=True).stdout.strip()
    except OSError:
        version = "unknown"
    w = sys.stdout.write
    w('"""System call numbers per seccomp architecture (generated: do not edit).\n\n')
    w(f"From the uapi headers of linux-libc-dev {version} by runv/oci/_gen_syscall_table.py.\n")
    w('X32 numbers include __X32_SYSCALL_BIT, as seccomp_data.nr shows them."""\n\n')
    for arch, path in HEADERS.items():
        table = parse(path)
        w(f"{arch}: dict[str, int] = {{\n")
        for name, nr in sorted(table.items(), key=lambda kv: kv[1]):
            w(f"    {name!r}: {nr:#x},\n" if nr >= X32_SYSCALL_BIT else f"    {name!r}: {nr},\n")
        w("}\n\n")
    w("TABLES = {" + ", ".join(f'"SCMP_ARCH_{a}": {a}' for a in HEADERS) + "}\n")


if __name__ == "__main__":
    main()
