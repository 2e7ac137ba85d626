"""Compile an OCI `linux.seccomp` profile to a classic BPF program.

The agent installs the program (SECCOMP record) with seccomp(2) right before
execve, so this is the whole of libseccomp that runv needs, done on the host
in pure Python. The program follows libseccomp's shape:

1. check `seccomp_data.arch` against each architecture of the filter (the
   native x86_64 always, plus the profile's `architectures`); a syscall of any
   other architecture gets the bad-arch action (kill the thread, as
   libseccomp's default);
2. x86_64 and x32 share one audit arch: a number with `__X32_SYSCALL_BIT` is
   x32's, and is refused as a bad arch when x32 is not in the filter;
3. per syscall number, its rules in the profile's order: the first whose
   argument conditions all hold gives its action; a syscall no rule matches
   gets `defaultAction`.

Arguments are 64 bits, compared in two 32-bit halves (high half first); on a
32-bit architecture (x86) only the low half exists. Syscall names that an
architecture lacks are skipped, as libseccomp does. Architectures other than
x86 ones are accepted and ignored: the guest is x86_64, their syscalls never
reach its kernel. A malformed profile raises a one-line SpecError.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

from runv.errors import SpecError

# classic BPF opcodes (linux/filter.h)
BPF_LD_W_ABS = 0x20  # A = *(u32 *)(data + k)
BPF_ALU_AND_K = 0x54  # A &= k
BPF_JMP_JA = 0x05
BPF_JEQ_K, BPF_JGT_K, BPF_JGE_K = 0x15, 0x25, 0x35
BPF_RET_K = 0x06
BPF_MAXINSNS = 4096

# seccomp return values (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

EPERM = 1

# seccomp_data offsets
OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, 16

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

# OCI/libseccomp architecture names. Only the x86 family can run in the guest.
X86_ARCHES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}
OTHER_ARCHES = {
    "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
}

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}

OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

U64 = 2**64


@dataclass(frozen=True)
class Program:
    filter: bytes  # struct sock_filter[], 8 bytes each
    flags: int  # seccomp(2) SECCOMP_FILTER_FLAG_* bits

    def __len__(self) -> int:
        return len(self.filter) // 8

    def __iter__(self):  # type: ignore[no-untyped-def]
        """`program, flags = compile_profile(...)` works too."""
        return iter((self.filter, self.flags))


def action(name: Any, errno_ret: Any, where: str) -> int:
    """The SECCOMP_RET_* value of an OCI action; errnoRet for ERRNO (default
    EPERM, as runc) and as the message number of TRACE."""
    if errno_ret is not None and (not _is_int(errno_ret) or not 0 <= errno_ret <= 0xFFFF):
        raise SpecError(f"seccomp: {where}: errnoRet {errno_ret!r} is not a number from 0 to 65535")
    data = EPERM if errno_ret is None else errno_ret
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return RET_TRAP
    if name == "SCMP_ACT_ERRNO":
        return RET_ERRNO | data
    if name == "SCMP_ACT_TRACE":
        return RET_TRACE | data
    if name == "SCMP_ACT_LOG":
        return RET_LOG
    if name == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if name == "SCMP_ACT_NOTIFY":
        raise SpecError(f"seccomp: {where}: SCMP_ACT_NOTIFY is not supported by runv "
                        "(the container's syscalls happen inside its VM, out of a host listener's reach)")
    raise SpecError(f"seccomp: {where}: unknown action {name!r}")


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


# ---- a tiny assembler: labels, and conditional jumps relaxed through `ja` when far ----

@dataclass
class _Insn:
    code: int
    k: int = 0
    jt: str | int = 0  # a label, or 0 for "the next instruction"
    jf: str | int = 0


class _Asm:
    def __init__(self) -> None:
        self.items: list[_Insn | str] = []  # instructions and label names
        self.n = 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def here(self, label: str) -> None:
        self.items.append(label)

    def ld(self, off: int) -> None:
        self.items.append(_Insn(BPF_LD_W_ABS, off))

    def and_(self, k: int) -> None:
        self.items.append(_Insn(BPF_ALU_AND_K, k))

    def ret(self, k: int) -> None:
        self.items.append(_Insn(BPF_RET_K, k))

    def ja(self, label: str) -> None:
        self.items.append(_Insn(BPF_JMP_JA, 0, label, 0))

    def j(self, code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.items.append(_Insn(code, k, jt, jf))

    def assemble(self) -> bytes:
        """The program; a conditional jump too far for its 8-bit offset goes
        through an unconditional `ja` (32-bit offset) put right after it."""
        items = list(self.items)
        while True:
            pos, labels = 0, {}
            for it in items:
                if isinstance(it, str):
                    labels[it] = pos
                else:
                    pos += 1
            out, far, pos = [], -1, 0
            for i, it in enumerate(items):
                if isinstance(it, str):
                    continue
                if it.code == BPF_JMP_JA:
                    assert isinstance(it.jt, str)  # ja always names its label
                    out.append(struct.pack("<HBBI", it.code, 0, 0, labels[it.jt] - pos - 1))
                else:
                    jt, jf = (labels[x] - pos - 1 if isinstance(x, str) else x for x in (it.jt, it.jf))
                    if jt > 255 or jf > 255:
                        far = i
                        break
                    out.append(struct.pack("<HBBI", it.code, jt, jf, it.k & 0xFFFFFFFF))
                pos += 1
            if far < 0:
                return b"".join(out)
            it = items[far]  # every conditional jump here has one branch falling through
            assert not isinstance(it, str)
            if isinstance(it.jt, str):
                items[far:far + 1] = [_Insn(it.code, it.k, 0, 1), _Insn(BPF_JMP_JA, 0, it.jt)]
            else:
                items[far:far + 1] = [_Insn(it.code, it.k, 1, 0), _Insn(BPF_JMP_JA, 0, it.jf)]


# ---- argument conditions ----

def _condition(asm: _Asm, arg: Any, wide: bool, fail: str, where: str) -> None:
    """Code that falls through when the condition holds and jumps to `fail` when not."""
    if not isinstance(arg, dict):
        raise SpecError(f"seccomp: {where}: an argument condition must be an object")
    index, op = arg.get("index"), arg.get("op")
    value, two = arg.get("value", 0), arg.get("valueTwo", 0)
    if not _is_int(index) or not 0 <= index <= 5:
        raise SpecError(f"seccomp: {where}: argument index {index!r} is not 0 to 5")
    if op not in OPERATORS:
        raise SpecError(f"seccomp: {where}: unknown argument operator {op!r}")
    for name, v in (("value", value), ("valueTwo", two)):
        if not _is_int(v) or not 0 <= v < U64:
            raise SpecError(f"seccomp: {where}: argument {name} {v!r} is not an unsigned 64-bit number")
    lo_off = OFF_ARGS + 8 * index
    hi_off = lo_off + 4
    v_lo, v_hi = value & 0xFFFFFFFF, value >> 32
    t_lo, t_hi = two & 0xFFFFFFFF, two >> 32
    if not wide:  # a 32-bit architecture has the low half only
        asm.ld(lo_off)
        if op == "SCMP_CMP_MASKED_EQ":
            asm.and_(v_lo)
            asm.j(BPF_JEQ_K, t_lo, 0, fail)
        else:
            code, negate = {"SCMP_CMP_EQ": (BPF_JEQ_K, False), "SCMP_CMP_NE": (BPF_JEQ_K, True),
                            "SCMP_CMP_GT": (BPF_JGT_K, False), "SCMP_CMP_LE": (BPF_JGT_K, True),
                            "SCMP_CMP_GE": (BPF_JGE_K, False), "SCMP_CMP_LT": (BPF_JGE_K, True)}[op]
            asm.j(code, v_lo, fail, 0) if negate else asm.j(code, v_lo, 0, fail)
        return
    ok = asm.label()
    if op == "SCMP_CMP_EQ":
        asm.ld(hi_off)
        asm.j(BPF_JEQ_K, v_hi, 0, fail)
        asm.ld(lo_off)
        asm.j(BPF_JEQ_K, v_lo, 0, fail)
    elif op == "SCMP_CMP_NE":
        asm.ld(hi_off)
        asm.j(BPF_JEQ_K, v_hi, 0, ok)
        asm.ld(lo_off)
        asm.j(BPF_JEQ_K, v_lo, fail, 0)
    elif op == "SCMP_CMP_MASKED_EQ":
        asm.ld(hi_off)
        asm.and_(v_hi)
        asm.j(BPF_JEQ_K, t_hi, 0, fail)
        asm.ld(lo_off)
        asm.and_(v_lo)
        asm.j(BPF_JEQ_K, t_lo, 0, fail)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):  # hi > v_hi, or hi == v_hi and lo >(=) v_lo
        asm.ld(hi_off)
        asm.j(BPF_JGT_K, v_hi, ok, 0)
        asm.j(BPF_JEQ_K, v_hi, 0, fail)
        asm.ld(lo_off)
        asm.j(BPF_JGT_K if op == "SCMP_CMP_GT" else BPF_JGE_K, v_lo, 0, fail)
    else:  # LT, LE: hi < v_hi, or hi == v_hi and lo <(=) v_lo
        asm.ld(hi_off)
        asm.j(BPF_JGT_K, v_hi, fail, 0)
        asm.j(BPF_JEQ_K, v_hi, 0, ok)
        asm.ld(lo_off)
        asm.j(BPF_JGE_K if op == "SCMP_CMP_LT" else BPF_JGT_K, v_lo, fail, 0)
    asm.here(ok)


# ---- the profile ----

@dataclass
class _Entry:
    names: list[str]
    action: int
    args: list[Any]
    index: int


@dataclass
class _Rule:
    action: int
    args: list[Any]
    where: str


def _rules_by_number(entries: list[_Entry], table: dict[str, int]) -> dict[int, list[_Rule]]:
    """Syscall number -> its rules in the profile's order; names the table lacks are skipped."""
    out: dict[int, list[_Rule]] = {}
    for e in entries:
        for name in e.names:
            nr = table.get(name)
            if nr is not None:
                out.setdefault(nr, []).append(_Rule(e.action, e.args, f"syscalls[{e.index}] ({name})"))
    return out


def _arch_section(asm: _Asm, rules: dict[int, list[_Rule]], default: int, wide: bool) -> None:
    """Code that, with A = the syscall number, returns the action for it."""
    simple: dict[int, list[int]] = {}  # action -> numbers whose first rule has no conditions
    for nr, rs in sorted(rules.items()):
        if not rs[0].args:
            if rs[0].action != default:
                simple.setdefault(rs[0].action, []).append(nr)
            continue
        nxt = asm.label()
        asm.j(BPF_JEQ_K, nr, 0, nxt)
        for rule in rs:
            if not rule.args:  # unconditional: no later rule can match
                asm.ret(rule.action)
                break
            fail = asm.label()
            for arg in rule.args:
                _condition(asm, arg, wide, fail, rule.where)
            asm.ret(rule.action)
            asm.here(fail)
        else:
            asm.ret(default)
        asm.here(nxt)
    for act, numbers in simple.items():
        for chunk in range(0, len(numbers), 250):  # one `ret` per 250 numbers keeps jumps short
            hit, miss = asm.label(), asm.label()
            for nr in numbers[chunk:chunk + 250]:
                asm.j(BPF_JEQ_K, nr, hit, 0)
            asm.ja(miss)
            asm.here(hit)
            asm.ret(act)
            asm.here(miss)
    asm.ret(default)


def _entries(syscalls: Any) -> list[_Entry]:
    if not isinstance(syscalls, list):
        raise SpecError("seccomp: syscalls must be a list")
    out = []
    for i, entry in enumerate(syscalls):
        if not isinstance(entry, dict):
            raise SpecError(f"seccomp: syscalls[{i}] must be an object")
        names = entry.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise SpecError(f"seccomp: syscalls[{i}]: names must be a non-empty list of syscall names")
        if "action" not in entry:
            raise SpecError(f"seccomp: syscalls[{i}]: action is required")
        args = entry.get("args") or []
        if not isinstance(args, list):
            raise SpecError(f"seccomp: syscalls[{i}]: args must be a list")
        out.append(_Entry(names, action(entry["action"], entry.get("errnoRet"), f"syscalls[{i}]"), args, i))
    return out


def compile_profile(seccomp: Any) -> Program:
    """The BPF program of an OCI `linux.seccomp` object."""
    from runv.oci import syscall_table

    if not isinstance(seccomp, dict):
        raise SpecError("seccomp: linux.seccomp must be an object")
    if "defaultAction" not in seccomp:
        raise SpecError("seccomp: defaultAction is required")
    default = action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"), "defaultAction")

    flags = 0
    for flag in seccomp.get("flags") or []:
        if flag not in FLAGS:
            raise SpecError(f"seccomp: unknown flag {flag!r}")
        flags |= FLAGS[flag]

    arches = {"SCMP_ARCH_X86_64"}  # the native architecture is always in the filter
    for arch in seccomp.get("architectures") or []:
        if arch not in X86_ARCHES and arch not in OTHER_ARCHES:
            raise SpecError(f"seccomp: unknown architecture {arch!r}")
        if arch in X86_ARCHES:
            arches.add(arch)
    entries = _entries(seccomp.get("syscalls") or [])

    asm = _Asm()
    bad_arch = RET_KILL_THREAD
    x86_64, i386, x32 = asm.label(), asm.label(), asm.label()
    asm.ld(OFF_ARCH)
    asm.j(BPF_JEQ_K, AUDIT_ARCH_X86_64, x86_64, 0)
    if "SCMP_ARCH_X86" in arches:
        asm.j(BPF_JEQ_K, AUDIT_ARCH_I386, i386, 0)
    asm.ret(bad_arch)

    asm.here(x86_64)
    asm.ld(OFF_NR)
    if "SCMP_ARCH_X32" in arches:
        asm.j(BPF_JGE_K, X32_SYSCALL_BIT, x32, 0)
    else:  # an x32 syscall, and x32 is not in the filter
        native = asm.label()
        asm.j(BPF_JGE_K, X32_SYSCALL_BIT, 0, native)
        asm.ret(bad_arch)
        asm.here(native)
    _arch_section(asm, _rules_by_number(entries, syscall_table.X86_64), default, True)
    if "SCMP_ARCH_X32" in arches:
        asm.here(x32)
        _arch_section(asm, _rules_by_number(entries, syscall_table.X32), default, True)
    if "SCMP_ARCH_X86" in arches:
        asm.here(i386)
        asm.ld(OFF_NR)
        _arch_section(asm, _rules_by_number(entries, syscall_table.X86), default, False)
    code = asm.assemble()
    if len(code) // 8 > BPF_MAXINSNS:
        raise SpecError(f"seccomp: the profile compiles to {len(code) // 8} BPF instructions, "
                        f"more than the kernel's limit of {BPF_MAXINSNS}")
    return Program(code, flags)
