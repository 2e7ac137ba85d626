"""The OCI seccomp profile compiler, checked by running its BPF on syscalls."""
from __future__ import annotations

import errno
import json
import struct

import pytest

from runv.errors import SpecError
from runv.oci import seccomp, syscall_table

X86_64, I386 = seccomp.AUDIT_ARCH_X86_64, seccomp.AUDIT_ARCH_I386
ALLOW, KILL_THREAD, KILL_PROCESS = seccomp.RET_ALLOW, seccomp.RET_KILL_THREAD, seccomp.RET_KILL_PROCESS


def run_bpf(prog: bytes, nr: int, arch: int = X86_64, args: tuple[int, ...] = ()) -> int:
    """A classic BPF interpreter for what the compiler emits, on one seccomp_data."""
    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0x1000, *args)
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    assert 0 < len(insns) <= 4096
    a, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            assert k % 4 == 0 and k + 4 <= len(data)
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35):  # jeq, jgt, jge #k
            cond = a == k if code == 0x15 else a > k if code == 0x25 else a >= k
            pc += jt if cond else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        assert pc < len(insns), "fell off the end of the program"


def errno_ret(e: int) -> int:
    return seccomp.RET_ERRNO | e


def nr(name: str, table: dict[str, int] = syscall_table.X86_64) -> int:
    return table[name]


def compile_(profile: dict) -> bytes:
    return seccomp.compile_profile(profile).filter


def test_table_is_the_kernels():
    assert nr("read") == 0 and nr("getcwd") == 79 and nr("clone3") == 435
    assert nr("getcwd", syscall_table.X86) == 183
    assert syscall_table.X32["getcwd"] == 0x40000000 | 79


def test_errno_for_one_syscall_and_default_allow():
    prog = compile_({"defaultAction": "SCMP_ACT_ALLOW",
                     "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})
    assert run_bpf(prog, nr("getcwd")) == errno_ret(errno.EPERM)  # runc's default errno
    assert run_bpf(prog, nr("read")) == ALLOW


def test_every_action():
    cases = {"SCMP_ACT_KILL": KILL_THREAD, "SCMP_ACT_KILL_THREAD": KILL_THREAD,
             "SCMP_ACT_KILL_PROCESS": KILL_PROCESS, "SCMP_ACT_TRAP": seccomp.RET_TRAP,
             "SCMP_ACT_ERRNO": errno_ret(errno.EPERM), "SCMP_ACT_TRACE": seccomp.RET_TRACE | errno.EPERM,
             "SCMP_ACT_LOG": seccomp.RET_LOG, "SCMP_ACT_ALLOW": ALLOW}
    for name, ret in cases.items():
        prog = compile_({"defaultAction": "SCMP_ACT_ERRNO" if name == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": ["mkdir"], "action": name}]})
        assert run_bpf(prog, nr("mkdir")) == ret, name


def test_errno_ret_and_default_errno_ret():
    prog = compile_({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
                     "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                  {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
                                  {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}]})
    assert run_bpf(prog, nr("read")) == ALLOW and run_bpf(prog, nr("write")) == ALLOW
    assert run_bpf(prog, nr("mkdir")) == errno_ret(errno.EROFS)
    assert run_bpf(prog, nr("ptrace")) == seccomp.RET_TRACE | 7
    assert run_bpf(prog, nr("open")) == errno_ret(errno.ENOSYS)


def test_unknown_names_are_skipped():
    prog = compile_({"defaultAction": "SCMP_ACT_ALLOW",
                     "syscalls": [{"names": ["no_such_syscall", "getcwd"], "action": "SCMP_ACT_ERRNO"}]})
    assert run_bpf(prog, nr("getcwd")) == errno_ret(errno.EPERM)


def test_architectures():
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": ["getcwd", "socketcall"], "action": "SCMP_ACT_ALLOW"}]}
    # native only: i386 and x32 syscalls are a bad architecture (killed, as libseccomp)
    prog = compile_(profile)
    assert run_bpf(prog, nr("getcwd")) == ALLOW
    assert run_bpf(prog, nr("getcwd", syscall_table.X86), arch=I386) == KILL_THREAD
    assert run_bpf(prog, syscall_table.X32["getcwd"]) == KILL_THREAD
    assert run_bpf(prog, 79, arch=0xC00000B7) == KILL_THREAD  # aarch64

    prog = compile_({**profile, "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"]})
    assert run_bpf(prog, nr("getcwd", syscall_table.X86), arch=I386) == ALLOW
    assert run_bpf(prog, nr("socketcall", syscall_table.X86), arch=I386) == ALLOW  # i386 only
    assert run_bpf(prog, nr("mkdir", syscall_table.X86), arch=I386) == errno_ret(errno.EPERM)
    # i386's getcwd (183) is x86_64's chroot... only on i386 is it allowed
    assert run_bpf(prog, 183) == errno_ret(errno.EPERM)
    assert run_bpf(prog, syscall_table.X32["getcwd"]) == ALLOW
    assert run_bpf(prog, syscall_table.X32["mkdir"]) == errno_ret(errno.EPERM)


def test_argument_operators_on_64_bits():
    big = 0x1_0000_0005

    def action_for(op: str, value: int, arg: int, two: int = 0) -> int:
        prog = compile_({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": value, "valueTwo": two, "op": op}]}]})
        return run_bpf(prog, nr("personality"), args=(arg,))

    samples = [0, 4, 5, 6, 0xFFFFFFFF, 0x1_0000_0000, big - 1, big, big + 1, 0x2_0000_0000, 2**64 - 1]
    ops = {"SCMP_CMP_EQ": lambda a, v: a == v, "SCMP_CMP_NE": lambda a, v: a != v,
           "SCMP_CMP_LT": lambda a, v: a < v, "SCMP_CMP_LE": lambda a, v: a <= v,
           "SCMP_CMP_GT": lambda a, v: a > v, "SCMP_CMP_GE": lambda a, v: a >= v}
    for op, pred in ops.items():
        for value in (5, big, 0xFFFFFFFF):
            for arg in samples:
                want = errno_ret(errno.EPERM) if pred(arg, value) else ALLOW
                assert action_for(op, value, arg) == want, (op, hex(value), hex(arg))
    mask = 0xFF00_0000_00FF
    for arg in samples + [0x4200_0000_0042, 0x4200_0000_0043]:
        want = errno_ret(errno.EPERM) if arg & mask == 0x4200_0000_0042 else ALLOW
        assert action_for("SCMP_CMP_MASKED_EQ", mask, arg, 0x4200_0000_0042) == want, hex(arg)


def test_arguments_on_a_32_bit_architecture_use_the_low_half():
    prog = compile_({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})
    pers = nr("personality", syscall_table.X86)
    assert run_bpf(prog, pers, arch=I386, args=(8,)) == errno_ret(errno.EPERM)
    assert run_bpf(prog, pers, arch=I386, args=(9,)) == ALLOW


def test_conditions_are_anded_and_rules_tried_in_order():
    prog = compile_({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                  {"index": 1, "value": 10, "op": "SCMP_CMP_LT"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL,
         "args": [{"index": 1, "value": 100, "op": "SCMP_CMP_GE"}]},
        {"names": ["clone"], "action": "SCMP_ACT_TRAP"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW"}]})
    clone = nr("clone")
    assert run_bpf(prog, clone, args=(0x11, 3)) == ALLOW
    assert run_bpf(prog, clone, args=(0x10000000, 3)) == seccomp.RET_TRAP  # CLONE_NEWUSER: first rule fails
    assert run_bpf(prog, clone, args=(0x11, 300)) == errno_ret(errno.EINVAL)
    assert run_bpf(prog, clone, args=(0x11, 50)) == seccomp.RET_TRAP


def test_many_rules_need_long_jumps():
    names = sorted(syscall_table.X86_64)
    syscalls = [{"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 + i % 100,
                 "args": [{"index": j, "value": i + j, "op": "SCMP_CMP_NE"} for j in range(6)]}
                for i, n in enumerate(names[:40])]
    syscalls.append({"names": names[40:], "action": "SCMP_ACT_ALLOW"})
    prog = compile_({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": syscalls})
    for i, n in enumerate(names[:40]):
        assert run_bpf(prog, nr(n), args=(0,) * 6) == errno_ret(1 + i % 100) or i == 0
        assert run_bpf(prog, nr(n), args=tuple(i + j for j in range(6))) == KILL_PROCESS
    for n in names[40:]:
        assert run_bpf(prog, nr(n)) == ALLOW
    assert run_bpf(prog, 1000) == KILL_PROCESS


def test_docker_like_profile_fits():
    names = sorted(set(syscall_table.X86_64) | set(syscall_table.X86))
    prog = seccomp.compile_profile({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]} for v in (0, 8, 0x20000)]
        + [{"names": names, "action": "SCMP_ACT_ALLOW"}]})
    assert prog.flags == 2 | 4
    assert len(prog) < 2000
    assert run_bpf(prog.filter, nr("mount")) == ALLOW
    assert run_bpf(prog.filter, nr("mount", syscall_table.X86), arch=I386) == ALLOW


@pytest.mark.parametrize("profile, message", [
    ({}, "defaultAction is required"),
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "unknown action 'SCMP_ACT_BOGUS'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}, "unknown architecture"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}, "unknown flag"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     r"syscalls\[0\]: names must be"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}, "action is required"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "argument index 6"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]},
     "unknown argument operator"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "not an unsigned 64-bit number"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "errnoRet 70000"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
     "SCMP_ACT_NOTIFY is not supported"),
    ("x", "must be an object"),
])
def test_malformed_profiles(profile, message):
    with pytest.raises(SpecError, match=message) as e:
        seccomp.compile_profile(profile)
    assert "\n" not in str(e.value)


def test_compiling_leaves_the_profile_alone():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}
    before = json.dumps(profile)
    seccomp.compile_profile(profile)
    assert json.dumps(profile) == before


def test_far_jumps_go_through_ja():
    conds = [{"index": k % 6, "value": k, "op": "SCMP_CMP_NE"} for k in range(1, 121)]
    prog = compile_({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": conds}]})
    assert any(struct.unpack_from("<H", prog, i)[0] == 0x05 for i in range(0, len(prog), 8))
    assert run_bpf(prog, nr("mkdir"), args=(0,) * 6) == errno_ret(errno.EPERM)
    for k in (1, 2, 60, 119, 120):
        args = [0] * 6
        args[k % 6] = k
        assert run_bpf(prog, nr("mkdir"), args=tuple(args)) == ALLOW, k
