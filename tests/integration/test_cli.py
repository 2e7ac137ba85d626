"""The rest of the command line: spec, check, version, features, list, events,
kill --all, and errors written to --log as JSON lines for containerd."""
from __future__ import annotations

import json
import os
import time

from runv_testlib import one_line_error


def test_spec_writes_a_default_config_that_runs(runv, make_bundle, tmp_path):
    bundle = make_bundle(["true"])
    os.remove(os.path.join(bundle, "config.json"))
    assert runv("spec", "--bundle", bundle).returncode == 0
    config = json.load(open(os.path.join(bundle, "config.json")))
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    assert "exists" in one_line_error(runv("spec", "--bundle", bundle))
    config["process"].update({"terminal": False, "args": ["echo", "spec ok"]})
    json.dump(config, open(os.path.join(bundle, "config.json"), "w"))
    r = runv("run", "--bundle", bundle, "fromspec")
    assert (r.returncode, r.stdout) == (0, b"spec ok\n")


def test_check_names_the_accelerator(runv):
    r = runv("check", "--format", "json")
    assert r.returncode == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["ok"] and report["accelerator"] in ("kvm", "tcg") and report["reason"]
    assert os.path.isfile(report["kernel"]) and os.path.isfile(report["initramfs"])
    text = runv("check").stdout.decode()
    assert f"accelerator: {report['accelerator']}" in text


def test_version_and_features(runv):
    assert b"runv version" in runv("version").stdout
    features = json.loads(runv("features").stdout)
    assert "pid" in features["linux"]["namespaces"]


def test_list_events_and_kill_all(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "sleep 300 & sleep 300"])
    assert runv("run", "-d", "--bundle", bundle, "many", detached=True).returncode == 0
    try:
        table = runv("list").stdout.decode().splitlines()
        assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
        assert table[1].split()[0] == "many" and table[1].split()[2] == "running"
        assert runv("list", "-q").stdout == b"many\n"
        event = json.loads(runv("events", "--stats", "many").stdout)
        assert event["type"] == "stats" and event["id"] == "many"
        assert event["data"]["pids"]["current"] >= 2
        assert event["data"]["memory"]["usage"]["usage"] > 0
        assert runv("kill", "--all", "many", "KILL").returncode == 0
        deadline = time.monotonic() + 30
        while runv.state("many")["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runv.state("many")["status"] == "stopped"
    finally:
        runv("delete", "--force", "many")


def test_errors_go_to_the_json_log(runv, tmp_path):
    log = tmp_path / "log.json"
    r = runv("--log", str(log), "--log-format", "json", "state", "nope")
    assert r.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nope" in entry["msg"] and entry["time"]
