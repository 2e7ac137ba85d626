"""OCI process and linux settings applied inside the guest."""
from __future__ import annotations

from runv_testlib import leftovers, one_line_error


def test_rlimits_caps_nnp_oom_masked_sysctl(runv, make_bundle):
    def edit(config):
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000}]
        config["process"]["capabilities"] = {s: ["CAP_KILL"] for s in ("bounding", "effective", "permitted")}
        config["process"]["noNewPrivileges"] = True
        config["process"]["oomScoreAdj"] = 123
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    script = ("ulimit -n; ulimit -Hn; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; "
              "cat /proc/self/oom_score_adj; cat /proc/sys/net/ipv4/ip_forward; cat /proc/kcore | wc -c")
    r = runv("run", "--bundle", make_bundle(["sh", "-c", script], config_edit=edit), "proc1")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().split("\n")
    assert out[0] == "1000" and out[1] == "2000"
    assert out[2].split() == ["CapEff:", "0000000000000020"]
    assert out[3].split() == ["NoNewPrivs:", "1"]
    assert out[4:7] == ["123", "1", "0"]  # /proc/kcore is masked by the default spec


def test_unknown_capability_is_refused_cleanly(runv, make_bundle):
    def edit(config):
        config["process"]["capabilities"]["bounding"].append("CAP_FOO")
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "cap1"))
    assert 'unknown capability "CAP_FOO"' in line
    assert leftovers() == []


def test_host_cgroup_holds_the_vm(runv, make_bundle):
    import os

    from runv.host.cgroups import VM_OVERHEAD

    def edit(config):
        config["linux"]["cgroupsPath"] = "/runv-test/cg1"
        config["linux"]["resources"] = {"memory": {"limit": 64 * 2**20}, "pids": {"limit": 64},
                                        "cpu": {"quota": 50000, "period": 100000}}
    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), "cg1",
                detached=True).returncode == 0
    try:
        state = runv.state("cg1")
        procs = open("/sys/fs/cgroup/pids/runv-test/cg1/cgroup.procs").read().split()
        assert str(state["pid"]) in procs and len(procs) == 2  # the shim and its QEMU
        assert open("/sys/fs/cgroup/pids/runv-test/cg1/pids.max").read().strip() == "64"
        limit = int(open("/sys/fs/cgroup/memory/runv-test/cg1/memory.limit_in_bytes").read())
        assert limit == 64 * 2**20 + VM_OVERHEAD
    finally:
        runv("delete", "--force", "cg1")
    assert not os.path.exists("/sys/fs/cgroup/pids/runv-test/cg1")
    for d in os.listdir("/sys/fs/cgroup"):
        if os.path.isdir(f"/sys/fs/cgroup/{d}/runv-test"):
            os.rmdir(f"/sys/fs/cgroup/{d}/runv-test")


def test_seccomp_profile_blocks_a_syscall(runv, make_bundle):
    def edit(config):
        config["root"]["readonly"] = False
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    r = runv("run", "--bundle", make_bundle(["sh", "-c", "mkdir /tmp/x; echo $?; echo still here"],
                                            config_edit=edit), "sc1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"1\nstill here\n" and b"Operation not permitted" in r.stderr


def test_malformed_seccomp_profile_is_refused_cleanly(runv, make_bundle):
    def edit(config):
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "sc2"))
    assert "seccomp" in line
    assert leftovers() == []
