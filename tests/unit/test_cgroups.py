"""cgroupsPath forms."""
from runv.cgroups import cgroup_path


def test_cgroup_paths():
    assert cgroup_path({}, "c1") == "/runv/c1"
    assert cgroup_path({"linux": {"cgroupsPath": "/docker/abc"}}, "c1") == "/docker/abc"
    assert cgroup_path({"linux": {"cgroupsPath": "rel/x"}}, "c1") == "/runv/rel/x"
    assert cgroup_path({"linux": {"cgroupsPath": "system.slice:docker:abc"}}, "c1") == \
        "/system.slice/docker-abc.scope"
