#!/usr/bin/env python3
"""Run the opencontainers runtime-tools validation suite against OCI runtimes.

Every validation program that conformance/build.sh built is run once per
runtime (default: runv, runc and crun), sequentially, as root, from the suite
directory (the programs copy ./runtimetest into each bundle and untar
./rootfs-amd64.tar.gz), with RUNTIME set to the runtime's path and TMPDIR set
to a scratch directory owned by this harness.

Pass/fail rule, per program and runtime (only top-level TAP counts: indented
lines are YAML diagnostics, which may quote runtimetest's own TAP):
  TIMEOUT  the program ran longer than the timeout and was killed.
  FAIL     a result line "not ok ..." without a SKIP or TODO directive; or a
           YAML diagnostic with an `error` key attached to no result (several
           programs report a failed lifecycle only that way, with plan 1..0);
           or a non-zero exit status; or a plan (1..N) that does not match
           the number of results of its stream ("TAP version" starts one).
  PASS     otherwise. "ok ... # SKIP" passes, so does "not ok ... # TODO"
           (as TAP says), and so does a program that prints nothing and
           exits 0 (the *_fail programs do that when the runtime rightly
           refuses the config).

After each program the harness removes what the suite leaks: containers left
in the runtimes' state roots (`delete --force`), processes left in the
program's session, mounts under the scratch directory, the scratch bundles
(TMPDIR/ocitest*, TMPDIR/oci-pid*) and the suite's test cgroups
(cgrouptest, testdir/cgrouptest/container).

Writes a table to stdout, the results to conformance/RESULTS.md (--out), and
ends with "N passed, M failed" for runv (or the first runtime given).
Exit status: 0 when the suite ran (whatever the results), 2 on a setup error.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.environ.get("RUNV_CACHE", "/var/cache/runv"), "conformance")
DEFAULT_SUITE = os.path.join(CACHE, "suite")
DEFAULT_LOGS = os.path.join(CACHE, "logs")

DEFAULT_RUNTIMES = [("runv", "/usr/local/bin/runv"), ("runc", "runc"), ("crun", "crun")]
DEFAULT_ROOTS = {"runc": "/run/runc", "crun": "/run/crun", "runv": "/run/runv"}
DEFAULT_TIMEOUTS = {"runv": 120.0}
OTHER_TIMEOUT = 30.0
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CGROUP_ROOT = "/sys/fs/cgroup"
# v1 controllers that Debian/systemd hosts usually mount but a bare hybrid
# layout may lack; runc skips tests without them and crun refuses to run.
EXTRA_CONTROLLERS = [("hugetlb",), ("net_cls", "net_prio")]
# cgroupsPath values the suite uses (runtime-tools cgroups.AbsCgroupPath,
# cgroups.RelCgroupPath).
TEST_CGROUP_NAMES = ("cgrouptest",)
TEST_CGROUP_PARENTS = ("testdir",)


def log(msg: str) -> None:
    print(f"[conformance] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# TAP


TEST_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN_LINE = re.compile(r"^1\.\.(\d+)")
DIRECTIVE = re.compile(r"#\s*(SKIP|TODO)\b", re.IGNORECASE)
YAML_START, YAML_END = "  ---", "  ..."


@dataclass
class Tap:
    lines: list[str]
    results: int = 0
    failures: list[int] = field(default_factory=list)  # line indexes of failed results
    orphan_errors: list[int] = field(default_factory=list)  # line indexes of "  ---"
    bad_plans: list[str] = field(default_factory=list)


def parse_tap(text: str) -> Tap:
    """Top-level TAP only: results, plans per stream ("TAP version" starts a
    new stream; some programs print two), and YAML diagnostics with an
    `error` key that are attached to no result line."""
    tap = Tap(lines=text.splitlines())
    lines = tap.lines
    streams: list[list] = []  # [plan, results]
    prev = "start"
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("TAP version") or not streams:
            streams.append([None, 0])
        if line.startswith("TAP version"):
            prev = "header"
        elif PLAN_LINE.match(line):
            streams[-1][0] = int(PLAN_LINE.match(line).group(1))
            prev = "plan"
        elif TEST_LINE.match(line):
            tap.results += 1
            streams[-1][1] += 1
            if line.startswith("not ok") and not DIRECTIVE.search(line):
                tap.failures.append(i)
            prev = "result"
        elif line.rstrip() == YAML_START:
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != YAML_END:
                j += 1
            if prev != "result" and any(ln.startswith("  error:") for ln in lines[i + 1:j]):
                tap.orphan_errors.append(i)
            prev = "yaml"
            i = j + 1
            continue
        elif line.strip() and not line.startswith("#"):
            prev = "other"
        i += 1
    for n, (plan, results) in enumerate(streams, 1):
        if plan is not None and plan != results:
            tap.bad_plans.append(f"stream {n}: planned {plan}, reported {results}")
    return tap


def _yaml_block(lines: list[str], start: int, step: int) -> list[str]:
    """The body of the YAML diagnostic block right after lines[start]
    (step=1) or right before it (step=-1), or []."""
    open_, close = (YAML_START, YAML_END) if step > 0 else (YAML_END, YAML_START)
    i = start + step
    if not (0 <= i < len(lines)) or lines[i].rstrip() != open_:
        return []
    out = []
    i += step
    while 0 <= i < len(lines) and lines[i].rstrip() != close:
        out.append(lines[i])
        i += step
    if step < 0:
        out.reverse()
    return [ln for ln in out if ln.strip()]


def failure_reason(tap: Tap) -> str:
    """First top-level failure plus its diagnostic, on one line."""
    lines = tap.lines
    idx = tap.failures[0]
    head = lines[idx].strip()
    comments = []
    for line in lines[idx + 1:]:
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("# ").strip())
    # The result's diagnostic is usually the YAML block after it, but the
    # in-container programs print runtimetest's output (a stdout: block)
    # before their result, so look both ways and prefer the block that holds
    # a failure of runtimetest's own.
    cands = [c for c in (_yaml_block(lines, idx, 1), comments, _yaml_block(lines, idx, -1)) if c]
    diag = []
    for c in cands:
        inner = [d.strip() for d in c if d.strip() not in ("---", "...")]
        bad = [j for j, d in enumerate(inner) if re.match(r"^not ok\b", d)]
        if bad:
            real = [j for j in bad if not DIRECTIVE.search(inner[j])]
            j = (real or bad)[0]
            tail = []
            for x in inner[j + 1:j + 6]:
                if x.startswith(("ok ", "not ok", "1..")):
                    break
                tail.append(x)
            diag = [inner[j]] + tail
            break
    else:
        plain = [c for c in cands if not any(x.startswith("  stdout:") for x in c)]
        diag = (plain or cands or [[]])[0]
    text = head
    if diag:
        text += " | " + "; ".join(x.strip() for x in diag if x.strip())
    return _trim(text)


def orphan_reason(tap: Tap) -> str:
    body = _yaml_block(tap.lines, tap.orphan_errors[0] - 1, 1)
    return _trim("diagnostic without a result: " + "; ".join(ln.strip() for ln in body))


def _trim(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------
# Runtimes and cleanup


@dataclass
class Runtime:
    name: str
    path: str | None  # resolved executable, None if missing
    given: str
    root: str
    timeout: float
    version: str = ""
    known: set[str] = field(default_factory=set)  # containers that are not ours


def resolve(path: str) -> str | None:
    if os.sep in path:
        return path if os.access(path, os.X_OK) and os.path.isfile(path) else None
    return shutil.which(path, path=os.environ.get("PATH", "") + ":" + STD_PATH)


def runtime_version(rt: Runtime) -> str:
    if not rt.path:
        return f"not found ({rt.given})"
    try:
        p = subprocess.run([rt.path, "--version"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        out = (p.stdout or p.stderr).strip().splitlines()
        pkg = ""
        if rt.path.startswith(("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")):
            q = subprocess.run(["dpkg", "-S", rt.path], capture_output=True, text=True)
            if q.returncode == 0:
                name = q.stdout.split(":")[0]
                v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name],
                                   capture_output=True, text=True).stdout.strip()
                pkg = f" (Debian {name} {v})" if v else ""
        return (out[0] if out else f"exit {p.returncode}") + pkg
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


def list_containers(rt: Runtime) -> set[str]:
    try:
        return {e.name for e in os.scandir(rt.root)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")}
    except OSError:
        return set()


def container_is_ours(rt: Runtime, cid: str, scratch: str) -> bool:
    """True if the container's bundle lies under our scratch dir: the state
    files in <root>/<id>/ name it (runc, crun and runv all record the bundle
    path there), or else `<runtime> state` reports it. Containers of anyone
    else using the same runtime on this machine are left alone."""
    needle = scratch.rstrip("/").encode() + b"/"
    d = os.path.join(rt.root, cid)
    try:
        for e in os.scandir(d):
            if e.is_file(follow_symlinks=False) and e.stat().st_size < (4 << 20):
                with open(e.path, "rb") as f:
                    if needle in f.read():
                        return True
    except OSError:
        pass
    try:
        p = subprocess.run([rt.path, "state", cid], capture_output=True, timeout=15,
                           stdin=subprocess.DEVNULL, start_new_session=True)
        return needle in p.stdout
    except (OSError, subprocess.SubprocessError):
        return False


def delete_leftovers(rt: Runtime, scratch: str, report: list[str]) -> None:
    if not rt.path:
        return
    left = []
    for c in sorted(list_containers(rt) - rt.known):
        if container_is_ours(rt, c, scratch):
            left.append(c)
        else:
            rt.known.add(c)  # someone else's; do not ask again
    for cid in left:
        try:
            subprocess.run([rt.path, "delete", "--force", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=max(15.0, rt.timeout / 2), start_new_session=True)
        except subprocess.TimeoutExpired:
            pass
    if left:
        still = sorted(set(left) & list_containers(rt))
        report.append(f"{rt.name}: {len(left)} container(s) left, deleted "
                      f"{len(left) - len(still)}"
                      + (f", undeletable: {' '.join(still)}" if still else ""))


def stray_pids(sid: int, tmpdir: str) -> list[int]:
    """Live processes left by a test program: those still in its session,
    and those that left the session (setsid daemons, VMs) but still carry
    the TMPDIR the harness gave the program in their environment."""
    mark = f"TMPDIR={tmpdir}".encode()
    pids = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the parenthesised comm: state ppid pgrp session ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) < 4 or rest[0] in "ZX":
            continue
        if int(rest[3]) == sid:
            pids.append(int(e))
            continue
        try:
            with open(f"/proc/{e}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    pids.append(int(e))
        except OSError:
            pass
    return pids


def kill_strays(sid: int, tmpdir: str, report: list[str]) -> None:
    pids = stray_pids(sid, tmpdir)
    if not pids:
        return
    names = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                names.append(f.read().strip())
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while stray_pids(sid, tmpdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    report.append(f"killed {len(pids)} leftover process(es) ({', '.join(sorted(set(names)))})")


def mounts_under(prefix: str) -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                    out.append(mp)
    except OSError:
        pass
    return out


def unmount_under(prefix: str, report: list[str]) -> None:
    n = 0
    for _ in range(5):
        mps = mounts_under(prefix)
        if not mps:
            break
        for mp in sorted(set(mps), key=len, reverse=True):
            r = subprocess.run(["umount", "-l", mp], capture_output=True)
            n += r.returncode == 0
    if n:
        report.append(f"unmounted {n} mount(s) under {prefix}")
    if mounts_under(prefix):
        report.append(f"could not unmount everything under {prefix}")


def remove_scratch(tmp: str, report: list[str]) -> None:
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    if names:
        bundles = [n for n in names if n.startswith(("ocitest", "oci-pid"))]
        report.append(f"removed {len(bundles)} bundle/temp dir(s) from TMPDIR"
                      + (f" and {len(names) - len(bundles)} other file(s)" if len(names) > len(bundles) else ""))
    for n in names:
        p = os.path.join(tmp, n)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def cgroup_mounts() -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                if parts[sep + 1] in ("cgroup", "cgroup2"):
                    out.append(parts[4])
    except (OSError, ValueError):
        pass
    return out


def remove_test_cgroups(report: list[str]) -> None:
    removed = failed = 0
    for mnt in cgroup_mounts():
        targets = []
        for dirpath, dirnames, _ in os.walk(mnt):
            for d in list(dirnames):
                if d in TEST_CGROUP_NAMES:
                    targets.append(os.path.join(dirpath, d))
                    dirnames.remove(d)
        for t in targets:
            # children first, then the dir, then a 'testdir' parent if empty
            for dirpath, _, _ in sorted(os.walk(t), key=lambda x: -len(x[0])):
                try:
                    os.rmdir(dirpath)
                    removed += 1
                except OSError:
                    failed += 1
            parent = os.path.dirname(t)
            if os.path.basename(parent) in TEST_CGROUP_PARENTS:
                try:
                    os.rmdir(parent)
                    removed += 1
                except OSError:
                    pass
    if removed:
        report.append(f"removed {removed} test cgroup dir(s)")
    if failed:
        report.append(f"{failed} test cgroup dir(s) busy")


# --------------------------------------------------------------------------
# cgroup v1 controllers


def host_is_cgroup_v1() -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[4] == CGROUP_ROOT:
                    return parts[parts.index("-") + 1] == "tmpfs"
    except (OSError, ValueError):
        pass
    return False


def mounted_controllers() -> set[str]:
    have = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] == "cgroup":
                have.update(parts[sep + 3].split(","))
    return have


def available_controllers() -> set[str]:
    avail = set()
    with open("/proc/cgroups") as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.split()
            if len(p) >= 4 and p[3] == "1":
                avail.add(p[0])
    return avail


def mount_cgroups() -> list[str]:
    """Mount the missing extra v1 controllers; return what we mounted, for
    unmount_cgroups() to give back after the run."""
    if not host_is_cgroup_v1():
        log("--mount-cgroups: host has no cgroup v1 layout (tmpfs at /sys/fs/cgroup); nothing to do")
        return []
    made = []
    have, avail = mounted_controllers(), available_controllers()
    for group in EXTRA_CONTROLLERS:
        ctrls = [c for c in group if c in avail]
        if not ctrls or any(c in have for c in ctrls):
            continue
        name = ",".join(ctrls)
        mp = os.path.join(CGROUP_ROOT, name)
        os.makedirs(mp, exist_ok=True)
        r = subprocess.run(["mount", "-t", "cgroup", "-o", name, "cgroup", mp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            log(f"--mount-cgroups: mount {name} failed: {r.stderr.strip()}")
            continue
        made.append(mp)
        for c in ctrls:  # net_cls -> net_cls,net_prio, as systemd does
            link = os.path.join(CGROUP_ROOT, c)
            if c != name and not os.path.lexists(link):
                os.symlink(name, link)
                made.append(link)
        log(f"--mount-cgroups: mounted {name} at {mp}")
    return made


def unmount_cgroups(made: list[str]) -> None:
    """Give back what mount_cgroups() mounted: the child cgroups the runtimes
    left (deepest first, so that the hierarchy can be destroyed), the mounts,
    their mount points and the links. Tests that follow must see the host as
    it came."""
    for path in reversed(made):
        if os.path.islink(path):
            os.unlink(path)
            continue
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            if dirpath != path:
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    log(f"--mount-cgroups: cannot remove {dirpath}: {e.strerror}")
        if _unmount_hierarchy(path):
            try:
                os.rmdir(path)
            except OSError as e:
                log(f"--mount-cgroups: cannot remove {path}: {e.strerror}")
            log(f"--mount-cgroups: unmounted {path}")


def _unmount_hierarchy(path: str, wait: float = 20.0) -> bool:
    """Unmount a v1 hierarchy so that the kernel destroys it. A child cgroup just
    removed may still be dying, and a hierarchy unmounted then stays alive
    (dormant, still in /proc/self/cgroup): wait until only its root is left."""
    controller = os.path.basename(path).split(",")[0]
    deadline = time.monotonic() + wait
    while cgroup_counts().get(controller, 1) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    r = subprocess.run(["umount", path], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"--mount-cgroups: umount {path} failed: {r.stderr.strip()}")
        return False
    while controller in attached_controllers() and time.monotonic() < deadline + 2:
        time.sleep(0.1)
    if controller in attached_controllers():
        log(f"--mount-cgroups: {path} stays attached after umount (a cgroup in it is still in use)")
    return True


def cgroup_counts() -> dict[str, int]:
    """How many cgroups (the root included) each v1 controller's hierarchy has."""
    counts = {}
    with open("/proc/cgroups") as f:
        for line in f:
            p = line.split()
            if len(p) >= 4 and not line.startswith("#"):
                counts[p[0]] = int(p[2])
    return counts


def attached_controllers() -> set[str]:
    """Controllers bound to a v1 hierarchy (mounted or dormant), from /proc/cgroups."""
    attached = set()
    with open("/proc/cgroups") as f:
        for line in f:
            p = line.split()
            if len(p) >= 4 and not line.startswith("#") and p[1] != "0":
                attached.add(p[0])
    return attached


# --------------------------------------------------------------------------
# Running


@dataclass
class Result:
    status: str  # PASS FAIL TIMEOUT
    reason: str = ""
    seconds: float = 0.0


def run_one(suite: str, test: str, rt: Runtime, runtimes: list[Runtime], scratch: str,
            logs: str, leaks: dict[str, list[str]]) -> Result:
    prog = os.path.join(suite, "validation", test + ".t")
    if not rt.path:
        return Result("FAIL", f"runtime not found: {rt.given}")
    tmp = os.path.join(scratch, rt.name)
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(os.path.join(logs, rt.name), exist_ok=True)
    base = os.path.join(logs, rt.name, test)
    env = dict(os.environ)
    env.update(RUNTIME=rt.path, TMPDIR=tmp,
               PATH=env.get("PATH", STD_PATH) + ":" + STD_PATH)
    start = time.monotonic()
    # Output goes to files, not pipes: a daemon the runtime leaves behind may
    # inherit the program's stdout and would keep a pipe open forever.
    with open(base + ".tap", "wb") as out, open(base + ".stderr", "wb") as err:
        proc = subprocess.Popen([prog], cwd=suite, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=rt.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            rc = proc.wait()
    secs = time.monotonic() - start
    with open(base + ".rc", "w") as f:
        f.write(f"{'timeout' if timed_out else rc}\n")

    report: list[str] = []
    for r in runtimes:
        delete_leftovers(r, scratch, report)
    kill_strays(proc.pid, tmp, report)
    for r in runtimes:  # a killed shim may have left its state behind
        delete_leftovers(r, scratch, report)
    unmount_under(tmp, report)
    remove_scratch(tmp, report)
    remove_test_cgroups(report)
    if report:
        leaks[f"{rt.name} {test}"] = report

    with open(base + ".tap", encoding="utf-8", errors="replace") as f:
        tap = parse_tap(f.read())
    with open(base + ".stderr", encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    return judge(tap, rc, timed_out, stderr, rt.timeout, secs)


def judge(tap: Tap, rc: int, timed_out: bool, stderr: str, timeout: float,
          secs: float) -> Result:
    if timed_out:
        last = [ln for ln in tap.lines if TEST_LINE.match(ln)]
        return Result("TIMEOUT", _trim(f"killed after {timeout:g}s"
                                       + (f"; last result: {last[-1]}" if last else "")), secs)
    errl = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    exit_info = _trim(f"exit status {rc}: " + " / ".join(errl[:3]))
    first = (failure_reason(tap) if tap.failures else
             orphan_reason(tap) if tap.orphan_errors else "")
    if first and rc != 0 and errl:
        # e.g. a *_fail program: runtimetest's TAP, then util.Fatal's message
        return Result("FAIL", f"{_trim(first, 190)} [{_trim(exit_info, 110)}]", secs)
    if first:
        return Result("FAIL", first, secs)
    if rc != 0:
        return Result("FAIL", exit_info, secs)
    if tap.bad_plans:
        return Result("FAIL", "; ".join(tap.bad_plans), secs)
    return Result("PASS", "", secs)


def list_tests(suite: str) -> list[str]:
    vd = os.path.join(suite, "validation")
    return sorted(n[:-2] for n in os.listdir(vd) if n.endswith(".t"))


def parse_pairs(values: list[str], what: str) -> list[tuple[str, str | None]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not name:
            raise SystemExit(f"bad {what}: {v!r} (want NAME=VALUE)")
        out.append((name, path if sep else None))
    return out


def format_table(tests: list[str], runtimes: list[Runtime],
                 results: dict[tuple[str, str], Result], markdown: bool) -> str:
    head = ["test"] + [r.name for r in runtimes]
    rows = [[t] + [results[(t, r.name)].status for r in runtimes] for t in tests]
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + [":---:"] * len(runtimes)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    w = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{n}}}" for n in w)
    return "\n".join(fmt.format(*r).rstrip() for r in [head] + rows)


def counts(tests: list[str], rt: Runtime, results) -> tuple[int, int]:
    p = sum(results[(t, rt.name)].status == "PASS" for t in tests)
    return p, len(tests) - p


def write_results(path: str, tests, runtimes, results, suite_version: str,
                  leaks: dict[str, list[str]], cgroups_note: str, main: Runtime,
                  started: str, elapsed: float) -> None:
    out = ["# OCI runtime-tools conformance results", "",
           "Generated by `conformance/run.py` (see conformance/README.md).", "",
           f"- Date: {started} (took {elapsed:.0f} s)",
           f"- Suite: opencontainers runtime-tools validation, Debian source "
           f"`golang-github-opencontainers-runtime-tools` {suite_version}, "
           f"{len(tests)} programs",
           f"- Host: Linux {os.uname().release}; cgroups: {cgroups_note}"]
    for r in runtimes:
        p, f = counts(tests, r, results)
        out.append(f"- {r.name}: `{r.version}` ({r.path or r.given}): "
                   f"**{p} passed, {f} failed**")
    out += ["", "## Results", "", format_table(tests, runtimes, results, True), ""]
    fails = [(t, results[(t, main.name)]) for t in tests
             if results[(t, main.name)].status != "PASS"]
    out += [f"## Why {main.name} fails", ""]
    if fails:
        out += [f"- `{t}` ({r.status}): {r.reason.replace('`', chr(39))}" for t, r in fails]
    else:
        out.append(f"{main.name} passes every test.")
    out += ["", "## What the suite leaked (cleaned up after each test)", ""]
    if leaks:
        out += [f"- {k}: " + "; ".join(v) for k, v in leaks.items()]
    else:
        out.append("Nothing.")
    out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", action="append", default=[], metavar="NAME=PATH",
                    help="runtime to test (repeatable; default: runv=/usr/local/bin/runv, "
                         "runc, crun). PATH may be omitted to look NAME up in PATH.")
    ap.add_argument("--root", action="append", default=[], metavar="NAME=DIR",
                    help="state root of a runtime, to find leftover containers "
                         "(default /run/NAME)")
    ap.add_argument("--only", action="append", default=[], metavar="TEST",
                    help="run only this validation program (repeatable)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), metavar="FILE",
                    help="markdown results file (default: conformance/RESULTS.md)")
    ap.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="per-test timeout in seconds (default: 120 for runv, 30 for others)")
    ap.add_argument("--mount-cgroups", action="store_true",
                    help="mount the missing hugetlb and net_cls,net_prio cgroup v1 "
                         "controllers under /sys/fs/cgroup (hybrid/v1 hosts only); "
                         "they stay mounted")
    ap.add_argument("--suite", default=DEFAULT_SUITE, metavar="DIR",
                    help="suite directory built by build.sh (default: %(default)s)")
    ap.add_argument("--logs", default=DEFAULT_LOGS, metavar="DIR",
                    help="where each program's TAP and stderr are kept (default: %(default)s)")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        log("must run as root")
        return 2
    suite = os.path.abspath(args.suite)
    for need in ("runtimetest", "rootfs-amd64.tar.gz", "validation"):
        if not os.path.exists(os.path.join(suite, need)):
            log(f"{suite}/{need} missing: run conformance/build.sh first")
            return 2
    try:
        with open(os.path.join(suite, "VERSION")) as f:
            suite_version = f.read().strip()
    except OSError:
        suite_version = "unknown"

    pairs = parse_pairs(args.runtime, "--runtime") or list(DEFAULT_RUNTIMES)
    roots = dict(parse_pairs(args.root, "--root"))
    runtimes = []
    for name, path in pairs:
        given = path or name
        timeout = args.timeout or DEFAULT_TIMEOUTS.get(name, OTHER_TIMEOUT)
        root = roots.get(name) or DEFAULT_ROOTS.get(name, f"/run/{name}")
        rt = Runtime(name, resolve(given), given, root, timeout)
        rt.version = runtime_version(rt)
        rt.known = list_containers(rt)
        runtimes.append(rt)
        log(f"{name}: {rt.path or 'NOT FOUND: ' + given} - {rt.version}")
    main_rt = next((r for r in runtimes if r.name == "runv"), runtimes[0])

    all_tests = list_tests(suite)
    if args.only:
        want = [t[:-2] if t.endswith(".t") else t for t in args.only]
        unknown = [t for t in want if t not in all_tests]
        if unknown:
            log(f"unknown test(s): {' '.join(unknown)}")
            return 2
        tests = [t for t in all_tests if t in want]
    else:
        tests = all_tests

    made = mount_cgroups() if args.mount_cgroups else []
    have = mounted_controllers() if host_is_cgroup_v1() else set()
    missing = sorted({c for g in EXTRA_CONTROLLERS for c in g} - have) if have else []
    cgroups_note = ("v1/hybrid" + (f", without {', '.join(missing)}" if missing else
                                   ", hugetlb and net_cls,net_prio mounted")
                    + (" (by --mount-cgroups)" if made else "")) if have else "v2 (unified)"
    started = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.monotonic()
    results: dict[tuple[str, str], Result] = {}
    leaks: dict[str, list[str]] = {}
    # TMPDIR of the programs: their bundles (ocitest*, oci-pid*) land here.
    # Short, as a bundle path may end up in a unix socket path.
    scratch = tempfile.mkdtemp(prefix="oct-", dir="/tmp")
    os.chmod(scratch, 0o755)  # user-namespace tests need to traverse it
    try:
        for rt in runtimes:
            for test in tests:
                res = run_one(suite, test, rt, runtimes, scratch, args.logs, leaks)
                results[(test, rt.name)] = res
                extra = f"  {res.reason}" if res.status != "PASS" else ""
                log(f"{rt.name:<5} {test:<36} {res.status:<7} {res.seconds:5.1f}s{extra[:160]}")
    finally:
        unmount_under(scratch, [])
        shutil.rmtree(scratch, ignore_errors=True)
        unmount_cgroups(made)
    elapsed = time.monotonic() - t0

    print(format_table(tests, runtimes, results, False))
    print()
    for rt in runtimes:
        p, f = counts(tests, rt, results)
        print(f"summary {rt.name}: {p} of {len(tests)} passed")
    if args.out:
        write_results(args.out, tests, runtimes, results, suite_version, leaks,
                      cgroups_note, main_rt, started, elapsed)
        log(f"wrote {args.out}")
    p, f = counts(tests, main_rt, results)
    print(f"{p} passed, {f} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
