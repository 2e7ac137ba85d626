"""Linux capability names and their bit numbers (linux/capability.h, 6.1)."""
from __future__ import annotations

from runv.errors import SpecError

CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
BITS = {name: bit for bit, name in enumerate(CAPS)}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def mask(names: list[str]) -> int:
    out = 0
    for name in names:
        bit = BITS.get(name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper())
        if bit is None:
            raise SpecError(f'unknown capability "{name}"')
        out |= 1 << bit
    return out


def masks(capabilities: dict[str, list[str]] | None) -> list[int]:
    """The five sets, in the order of the agent's CAPS record. No `capabilities`
    at all means none, as runc does."""
    capabilities = capabilities or {}
    return [mask(capabilities.get(s) or []) for s in SETS]
