"""OCI linux settings that the guest agent applies: default rlimits, seccomp,
user namespaces, devices, paths, names; and the host cgroup's device rules.
Each test boots real VMs through the real runv binary."""
from __future__ import annotations

import os
import resource

from runv_testlib import leftovers, one_line_error


def run_ok(runv, bundle: str, cid: str) -> list[str]:
    r = runv("run", "--bundle", bundle, cid)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().splitlines()


def assert_clean(runv) -> None:
    assert not os.path.isdir(runv.root) or os.listdir(runv.root) == []
    assert leftovers() == []


def test_without_rlimits_the_process_gets_runvs_own(runv, make_bundle):
    """As a runc container inherits runc's limits, not the guest kernel's boot defaults."""
    def edit(config):
        del config["process"]["rlimits"]
    out = run_ok(runv, make_bundle(["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -u; ulimit -s"],
                                   config_edit=edit), "rl1")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    assert out[0] == str(min(nofile[0], 2**20)) and out[1] == str(min(nofile[1], 2**20))
    assert out[2] == ("unlimited" if nproc == resource.RLIM_INFINITY else str(nproc))
    assert out[3] == ("unlimited" if stack == resource.RLIM_INFINITY else str(stack // 1024))


def seccomp_bundle(make_bundle, args, syscalls, default="SCMP_ACT_ALLOW", **extra):
    def edit(config):
        config["root"]["readonly"] = False
        config["linux"]["seccomp"] = {"defaultAction": default, "syscalls": syscalls,
                                      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                                      **extra}
    return make_bundle(args, config_edit=edit)


def test_seccomp_errno_ret_and_argument_conditions(runv, make_bundle):
    script = "mkdir /tmp/d; echo mkdir=$?; kill -0 $$; echo kill0=$?; kill -USR1 $$; echo usr1=$?"
    bundle = seccomp_bundle(make_bundle, ["sh", "-c", script], [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30},  # EROFS
        # kill(pid, SIGUSR1) only: the second argument is the signal
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}])
    r = runv("run", "--bundle", bundle, "sc1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["mkdir=1", "kill0=0", "usr1=1"]
    assert b"Read-only file system" in r.stderr and b"Operation not permitted" in r.stderr


def test_seccomp_kill_process_and_default_errno(runv, make_bundle):
    bundle = seccomp_bundle(make_bundle, ["sh", "-c", "echo before; exec hostname x; echo after"], [
        {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"}])
    r = runv("run", "--bundle", bundle, "sc2")
    assert r.stdout == b"before\n" and r.returncode == 128 + 31, (r.returncode, r.stderr)  # SIGSYS

    # a whitelist: everything else fails with defaultErrnoRet (ENOSYS); getpid is not allowed
    allowed = ["execve", "brk", "arch_prctl", "set_tid_address", "mmap", "munmap", "mprotect", "read",
               "write", "writev", "exit", "exit_group", "rt_sigaction", "rt_sigprocmask", "ioctl",
               "getuid", "geteuid", "getgid", "getegid", "fcntl", "close", "uname", "openat", "open",
               "fstat", "stat", "newfstatat", "lstat", "getpid", "getppid", "readlink", "poll"]
    bundle = seccomp_bundle(make_bundle, ["sh", "-c", "echo hi; cd /tmp || echo no cd"],
                            [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
                            default="SCMP_ACT_ERRNO", defaultErrnoRet=38)
    r = runv("run", "--bundle", bundle, "sc3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi\nno cd\n"
    assert b"Function not implemented" in r.stderr  # chdir got ENOSYS


def test_seccomp_applies_to_exec_too(runv, make_bundle):
    bundle = seccomp_bundle(make_bundle, ["sleep", "300"], [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    assert runv("run", "-d", "--bundle", bundle, "sc4", detached=True).returncode == 0
    try:
        r = runv("exec", "sc4", "sh", "-c", "mkdir /tmp/x 2>&1; echo $?")
        assert r.stdout == b"mkdir: can't create directory '/tmp/x': Permission denied\n1\n", r.stderr
    finally:
        runv("delete", "--force", "sc4")


def test_malformed_seccomp_leaves_nothing(runv, make_bundle):
    for i, profile in enumerate([{"defaultAction": "SCMP_ACT_BOGUS"},
                                 {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
                                 {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                                     {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}]):
        def edit(config, profile=profile):
            config["linux"]["seccomp"] = profile
        line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), f"bad{i}"))
        assert "seccomp" in line
    assert_clean(runv)


def userns_bundle(make_bundle, args, **edits):
    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 2000}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 3000}]
        config["process"]["oomScoreAdj"] = -200  # lowering it takes the agent's privileges
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 5000, "hard": 6000}]
        config["linux"].update(edits)
    return make_bundle(args, config_edit=edit)


def test_user_namespace_maps_and_exec(runv, make_bundle):
    script = ("id -u; cat /proc/self/uid_map /proc/self/gid_map; cat /proc/self/oom_score_adj; ulimit -Hn; "
              "hostname; ls -n /bin/busybox | awk '{print $3}'; sleep 300")
    bundle = userns_bundle(make_bundle, ["sh", "-c", script])
    assert runv("run", "-d", "--bundle", bundle, "us1", detached=True).returncode == 0
    try:
        r = runv("exec", "us1", "sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/oom_score_adj")
        assert r.returncode == 0, r.stderr
        lines = [ln.split() for ln in r.stdout.decode().splitlines()]
        assert lines == [["0"], ["0", "1000", "2000"], ["-200"]]
        r = runv("exec", "--user", "1000:1000", "us1", "id")
        assert r.stdout.decode().split()[:2] == ["uid=1000", "gid=1000"], r.stderr
    finally:
        runv("delete", "--force", "us1")


def test_user_namespace_init(runv, make_bundle):
    out = run_ok(runv, userns_bundle(make_bundle, ["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; "
                                                   "cat /proc/self/oom_score_adj; ulimit -Hn; "
                                                   "ls -n /bin/busybox | awk '{print $3}'"]), "us2")
    assert [ln.split() for ln in out] == [["0"], ["0", "1000", "2000"], ["0", "1000", "3000"], ["-200"],
                                          ["6000"], ["65534"]]  # the rootfs's root is not mapped


def test_user_namespace_without_maps_is_refused(runv, make_bundle):
    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "us3"))
    assert "uidMappings" in line
    assert_clean(runv)


def test_paths_names_devices(runv, make_bundle):
    def edit(config):
        config["domainname"] = "example.org"
        config["hostname"] = "box"
        config["root"]["readonly"] = False
        config["linux"]["maskedPaths"] = ["/proc/kcore", "/etc/secret", "/proc/acpi"]
        config["linux"]["readonlyPaths"] = ["/etc", "/does/not/exist"]
        config["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 9,
                                       "fileMode": 0o664, "uid": 7, "gid": 8}]
        config["linux"]["sysctl"] = {"kernel.domainname": "sysctl.example"}
    bundle = make_bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; cat /etc/secret | wc -c; "
                                      "ls /proc/acpi | wc -l; touch /etc/x 2>/dev/null; echo touch=$?; "
                                      "touch /tmp/ok; echo tmp=$?; ls -ln /dev/mydev; head -c4 /dev/mydev | wc -c"],
                         config_edit=edit)
    with open(os.path.join(bundle, "rootfs", "etc", "secret"), "w") as f:
        f.write("password\n")
    out = run_ok(runv, bundle, "pn1")
    assert out[:6] == ["box", "sysctl.example", "0", "0", "touch=1", "tmp=0"]
    assert out[6].split()[:4] == ["crw-rw-r--", "1", "7", "8"] and out[6].split()[4:6] == ["1,", "9"]
    assert out[7] == "4"


def test_host_device_cgroup_is_the_vms_not_the_containers(runv, make_bundle):
    """The container's device rules are for its processes, in the guest; the
    host cgroup (the shim and QEMU) allows only what those open."""
    from runv.host.cgroups import VM_DEVICES

    def edit(config):
        config["linux"]["cgroupsPath"] = "/runv-test/dev1"
        config["linux"]["resources"] = {"devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"}]}
    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), "dev1",
                detached=True).returncode == 0
    try:
        lines = open("/sys/fs/cgroup/devices/runv-test/dev1/devices.list").read().splitlines()
        assert sorted(lines) == sorted(VM_DEVICES)  # what QEMU and the shim need, nothing more
        assert "b 8:20 rw" not in lines and "a *:* rwm" not in lines
    finally:
        runv("delete", "--force", "dev1")
        gone = not os.path.exists("/sys/fs/cgroup/devices/runv-test/dev1")
        for d in os.listdir("/sys/fs/cgroup"):
            if os.path.isdir(f"/sys/fs/cgroup/{d}/runv-test"):
                os.rmdir(f"/sys/fs/cgroup/{d}/runv-test")
    assert gone


def test_cgroup_values_no_kernel_takes(runv, make_bundle):
    for i, res in enumerate([{"hugepageLimits": [{"pageSize": "3MB", "limit": 1 << 20}]},
                             {"memory": {"swappiness": 200}}]):
        def edit(config, res=res):
            config["linux"]["resources"] = res
        line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), f"cgbad{i}"))
        assert "hugetlb.3MB" in line or "swappiness" in line
    assert_clean(runv)
    for h in os.listdir("/sys/fs/cgroup"):  # the hierarchies made before hugetlb's failed are gone too
        assert not os.path.exists(f"/sys/fs/cgroup/{h}/runv/cgbad0"), h


def test_resources_bound_the_container_inside_the_guest(runv, make_bundle):
    """pids, memory and cpu limits on the container's own cgroup in the guest,
    seen at the root of its cgroup namespace; exec'd processes join it."""
    def edit(config):
        config["linux"]["namespaces"].append({"type": "cgroup"})
        config["linux"]["resources"] = {"pids": {"limit": 20}, "memory": {"limit": 64 * 2**20},
                                        "cpu": {"quota": 50000, "period": 100000}}
    # A subshell forks sleeps until it cannot (and exits): 1 sh + 1 subshell + 18
    # sleeps make 20; then 19 are left, and only shell builtins run.
    script = ("cat /proc/self/cgroup /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; "
              "(i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; "
              "read n < /sys/fs/cgroup/pids.current; echo $n")
    out = run_ok(runv, make_bundle(["sh", "-c", script], config_edit=edit), "gcg1")
    assert out == ["0::/", "20", str(64 * 2**20), "50000 100000", "19"]

    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), "gcg2",
                detached=True).returncode == 0
    try:
        r = runv("exec", "gcg2", "sh", "-c", "cat /proc/self/cgroup; read n < /sys/fs/cgroup/pids.current; echo $n")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split() == ["0::/", "2"]  # sleep and this sh
    finally:
        runv("delete", "--force", "gcg2")
