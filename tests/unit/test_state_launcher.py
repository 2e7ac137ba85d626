"""The C launcher (launcher/runv.c) against the Python path it stands in for.

The launcher answers `runv [global flags] state ID` itself and execs Python for
everything else; whatever it answers must be, byte for byte, what the Python
path (the script it execs, run directly) prints: stdout, stderr and exit status,
for well-formed and malformed state.json files, live, dead and zombie pids, and
every form of argv. The launcher is built here with the Makefile's flags; the
Python it execs is a wrapper that leaves a mark, so the tests also know which
side answered (a launcher that always fell back would pass the comparison)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runv import OCI_VERSION
from runv.host import proc
from runv.ocistate import STATE_FIELDS, STATUSES

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "launcher" / "runv.c"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LC_"))}, "LC_ALL": "C.UTF-8"}


def makefile_cflags() -> list[str]:
    text = (REPO / "Makefile").read_text()
    return shlex.split(re.search(r"^LAUNCHER_CFLAGS := (.*)$", text, re.M).group(1))


def write_script(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("launcher_script", REPO / "launcher" / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(str(path), str(REPO))


@dataclass
class Launcher:
    binary: Path
    script: Path
    work: Path

    def run(self, argv: list[str], env: dict[str, str] | None = None, **kw) -> tuple[tuple, tuple, bool]:
        """(the Python path's result, the launcher's, whether the launcher fell back)."""
        env = dict(ENV if env is None else env)
        mark = self.work / "fell-back"
        mark.unlink(missing_ok=True)
        py = subprocess.run([sys.executable, "-S", str(self.script), *argv], capture_output=True,
                            cwd=self.work, env=env, **kw)
        c = subprocess.run([str(self.binary), *argv], capture_output=True, cwd=self.work,
                           env={**env, "RUNV_TEST_FELL_BACK": str(mark)}, **kw)
        return outcome(py), outcome(c), mark.exists()


def outcome(r: subprocess.CompletedProcess) -> tuple:
    # --debug lines carry the time: the same lines at another time are the same answer
    stderr = re.sub(rb'time="[^"]*"|"time": "[^"]*"', b"time", r.stderr)
    return r.returncode, r.stdout, stderr


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> Launcher:
    # `make install` compiles the launcher too: without a compiler runv is not installed at all
    assert shutil.which("cc"), "no C compiler: `make deps` installs build-essential"
    d = tmp_path_factory.mktemp("launcher")
    script = d / "runv.py"
    write_script(script)
    python = d / "python"  # marks a fall back, then runs the real Python
    python.write_text('#!/bin/sh\n[ -z "$RUNV_TEST_FELL_BACK" ] || : > "$RUNV_TEST_FELL_BACK"\n'
                      f'exec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    binary = d / "runv"
    subprocess.run(["cc", *makefile_cflags(), f'-DRUNV_PYTHON="{python}"', f'-DRUNV_SCRIPT="{script}"',
                    "-o", str(binary), str(SOURCE)], check=True)
    work = d / "work"
    work.mkdir()
    return Launcher(binary, script, work)


@dataclass(frozen=True)
class Pids:
    live: int
    live_start: int
    dead: int
    zombie: int
    zombie_start: int
    odd: int  # a live process whose name holds ") Z ("
    odd_start: int


@pytest.fixture(scope="module")
def pids(tmp_path_factory) -> Pids:
    dead = subprocess.Popen(["true"])
    dead.wait()
    zombie = subprocess.Popen(["sleep", "0"])
    odd_name = tmp_path_factory.mktemp("odd") / "x) Z (y"
    odd_name.symlink_to(shutil.which("sleep"))
    odd = subprocess.Popen([str(odd_name), "600"])
    try:
        proc.wait_gone(zombie.pid, None, 10)  # a zombie reads as gone
        assert open(f"/proc/{zombie.pid}/stat").read().split(") ")[1][0] == "Z"
        assert proc.start_time(odd.pid) is not None
        yield Pids(os.getpid(), proc.start_time(os.getpid()), dead.pid, zombie.pid, 1, odd.pid,
                   proc.start_time(odd.pid))
    finally:
        zombie.wait()
        odd.kill()
        odd.wait()


# ---- state.json documents, written with every liberty JSON allows ----

class Obj(list):
    """A JSON object as its (key, value) pairs: duplicates allowed."""


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: -0, 1E+2, NaN, a nest 2000 deep."""
    text: str


def encode(value, rnd) -> str:
    def ws() -> str:
        return rnd.choice(["", "", "", " ", "\n", "\t", "\r\n  "])

    if isinstance(value, Raw):
        return value.text
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return encode_string(value, rnd)
    if isinstance(value, dict):
        value = Obj(value.items())
    if isinstance(value, Obj):
        items = [ws() + encode_string(k, rnd) + ws() + ":" + ws() + encode(v, rnd) + ws() for k, v in value]
        return "{" + (",".join(items) or ws()) + "}"
    if isinstance(value, list):
        return "[" + (",".join(ws() + encode(v, rnd) + ws() for v in value) or ws()) + "]"
    raise TypeError(type(value))


SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def encode_string(s: str, rnd) -> str:
    def u(code: int) -> str:
        h = f"{code:04x}"
        return "\\u" + (h.upper() if rnd.random() < 0.3 else h)

    out = []
    for ch in s:
        c = ord(ch)
        if ch in SHORT and rnd.random() < 0.7:
            out.append(SHORT[ch])
        elif c < 0x20 or 0xD800 <= c <= 0xDFFF or ch in '"\\' or rnd.random() < 0.2:
            out.append(u(c) if c < 0x10000 else u(0xD800 + ((c - 0x10000) >> 10)) + u(0xDC00 + ((c - 0x10000) & 0x3FF)))
        elif ch == "/" and rnd.random() < 0.5:
            out.append("\\/")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


ID_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
ids = st.text(ID_CHARS, min_size=1, max_size=30).filter(lambda s: s not in (".", "..") and not s.startswith("-"))
clean_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | clean_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_text, inner, max_size=3),
    max_leaves=8)
WRONG = [True, False, None, 1.5, "5", [], {}, 3, -1, Raw("1e2"), Raw("-0"), Raw("0.0"), ["x"], {"a": 1}]


@st.composite
def well_formed(draw, cid: str, pids: Pids) -> Obj:
    pid, start = draw(st.sampled_from([
        (pids.live, pids.live_start), (pids.dead, None), (pids.zombie, pids.zombie_start), (0, None),
        (pids.odd, pids.odd_start)]))
    fields: dict[str, object] = {
        "status": draw(st.sampled_from(STATUSES)),
        "pid": pid,
        "pid_start": draw(st.sampled_from([start, None, (start or 0) + 1, 10**30, -(start or 1),
                                           Raw("-0"), 0])),
        "bundle": draw(clean_text), "rootfs": draw(clean_text), "created": draw(clean_text),
        "annotations": draw(st.dictionaries(clean_text, clean_text, max_size=5)),
        "qemu_pid": draw(st.integers(0, 2**22 - 1)),
        "exit_code": draw(st.none() | st.integers()),
        "qemu_start": draw(st.none() | st.integers()),
        "cgroup_made": draw(st.none() | st.lists(clean_text, max_size=3)),
        "taps": draw(st.dictionaries(clean_text, clean_text, max_size=3)),
        "hooks": draw(st.dictionaries(clean_text, junk, max_size=3)),
        "resources": draw(st.dictionaries(clean_text, junk, max_size=3)),
        "guest_memory_mb": draw(st.integers()), "guest_ram_mb": draw(st.integers()),
        "shared_ram": draw(st.booleans()), "pod": draw(st.booleans()),
        "accel": draw(clean_text), "netns": draw(clean_text), "cgroup": draw(clean_text),
        "netns_path": draw(clean_text), "sandbox": draw(clean_text),
    }
    keep = draw(st.sets(st.sampled_from(sorted(fields))))
    doc = Obj([("id", cid)] + [(k, v) for k, v in fields.items() if k in keep])
    doc += draw(st.dictionaries(clean_text.filter(lambda k: k not in STATE_FIELDS), junk, max_size=3)).items()
    order = draw(st.permutations(range(len(doc))))
    return Obj(doc[i] for i in order)


def nest(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


@st.composite
def mutated(draw, doc: Obj) -> Obj | bytes:
    """A document broken one way (some ways leave it well formed: those must agree too)."""
    doc = Obj(doc)
    kind = draw(st.sampled_from(["type", "status", "pid", "id", "dup", "nest", "surrogate", "strings",
                                 "constant", "bigint", "raw"]))
    keys = [k for k, _ in doc]
    if kind == "type":
        key = draw(st.sampled_from(sorted(STATE_FIELDS)))
        doc = Obj([p for p in doc if p[0] != key] + [(key, draw(st.sampled_from(WRONG)))])
    elif kind == "status":
        status = draw(st.text(max_size=10) | st.sampled_from(["Running", "running ", ""]))
        doc = Obj([p for p in doc if p[0] != "status"] + [("status", status)])
    elif kind == "pid":
        value = draw(st.sampled_from([-1, 2**22, 2**22 - 1, 10**30, Raw("1" + "0" * 700), Raw("-0"),
                                      Raw("4194303.0"), Raw("1e3")]))
        key = draw(st.sampled_from(["pid", "qemu_pid"]))
        doc = Obj([p for p in doc if p[0] != key] + [(key, value)])
    elif kind == "id":
        doc = Obj([p for p in doc if p[0] != "id"] + draw(st.sampled_from(
            [[], [("id", 5)], [("id", None)], [("id", draw(clean_text))]])))
    elif kind == "dup":
        key = draw(st.sampled_from(keys))
        doc.insert(draw(st.integers(0, len(doc))), (key, draw(junk | st.sampled_from(WRONG))))
        if draw(st.booleans()):  # and a duplicate annotation, the same or another value
            doc.append(("annotations", Obj([("k", "1"), ("k", draw(st.sampled_from(["1", "2"])))])))
    elif kind == "nest":
        doc.append(("junk", nest(draw(st.sampled_from([62, 63, 64, 65, 100, 1100, 5000])))))
    elif kind == "surrogate":  # lone surrogates, escaped: Python keeps them
        s = draw(st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2))
        key = draw(st.sampled_from(["bundle", "rootfs", "created", "annotations", "junk"]))
        doc.append((key, {"a": s} if key == "annotations" else s))
    elif kind == "strings":
        key = draw(st.sampled_from(["annotations", "taps", "cgroup_made"]))
        doc.append((key, [1, "x"] if key == "cgroup_made" else {"a": draw(st.sampled_from(WRONG))}))
    elif kind == "constant":
        doc.append(("junk", Raw(draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "nul", "tru", "[1,]",
                                                       "{\"a\":1,}", "01", "1.", ".5", "1e", "-", "+1"])))))
    elif kind == "bigint":
        doc.append(("junk", Raw("9" * draw(st.sampled_from([599, 600, 601, 640, 4300, 4301])))))
    else:
        return draw(st.sampled_from([b"", b"null", b"[]", b'"x"', b"{}", b"\xef\xbb\xbf{}"]))
    return doc


@st.composite
def damaged(draw, text: bytes) -> bytes:
    """Bytes no encoder writes: invalid UTF-8, raw control characters, truncation, trailing data."""
    kind = draw(st.sampled_from(["utf8", "truncate", "trail", "control", "bom"]))
    at = draw(st.integers(0, len(text)))
    if kind == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                                    b"\x80", b"\xf8\x88\x80\x80\x80"]))
        return text[:at] + bad + text[at:]
    if kind == "truncate":
        return text[:at]
    if kind == "trail":
        return text + draw(st.sampled_from([b"x", b" {}", b",", b"\x00", b"\n\r\t "]))
    if kind == "control":
        return text.replace(b'"', b'"' + bytes([draw(st.integers(0, 0x1F))]), 1)
    return b"\xef\xbb\xbf" + text


def write_state(root: Path, cid: str, content: bytes) -> None:
    d = root / cid
    d.mkdir(parents=True, exist_ok=True)
    (d / "state.json").write_bytes(content)


@pytest.mark.property
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), cid=ids)
def test_state_answers_as_python(launcher, pids, data, cid):
    doc = data.draw(well_formed(cid, pids))
    rnd = data.draw(st.randoms(use_true_random=False))
    broken = data.draw(st.integers(0, 2))  # 0: as written, 1: mutated, 2: damaged bytes
    if broken == 1:
        doc = data.draw(mutated(doc))
    content = doc if isinstance(doc, bytes) else encode(doc, rnd).encode()
    if broken == 2:
        content = data.draw(damaged(content))
    with tempfile.TemporaryDirectory(dir=launcher.work) as root:
        write_state(Path(root), cid, content)
        py, c, fell_back = launcher.run(["--root", root, "state", cid])
    assert c == py
    if broken == 0:
        assert not fell_back, "the launcher gave a well-formed state to Python"
        assert py[0] == 0


STATE = {"ociVersion": OCI_VERSION}


def test_state_of_each_pid_is_answered_by_the_launcher(launcher, pids, tmp_path):
    cases = [(pids.live, pids.live_start, "running", pids.live), (pids.live, None, "running", pids.live),
             (pids.live, pids.live_start + 1, "stopped", 0), (pids.dead, None, "stopped", 0),
             (pids.zombie, None, "stopped", 0), (pids.odd, pids.odd_start, "running", pids.odd),
             (0, None, "stopped", 0)]
    for pid, start, status, shown in cases:
        write_state(tmp_path, "c1", json.dumps({"id": "c1", "status": "running", "pid": pid,
                                                "pid_start": start}).encode())
        py, c, fell_back = launcher.run(["--root", str(tmp_path), "state", "c1"])
        assert c == py and not fell_back
        out = json.loads(c[1])
        assert (out["status"], out["pid"]) == (status, shown), (pid, start)
    # creating with no pid yet stays creating; a status left out is "" while the shim lives
    for fields, status in [({"status": "creating", "pid": 0}, "creating"), ({"pid": pids.live}, ""),
                           ({"pid": 0}, "stopped")]:
        write_state(tmp_path, "c1", json.dumps({"id": "c1", **fields}).encode())
        py, c, fell_back = launcher.run(["--root", str(tmp_path), "state", "c1"])
        assert c == py and not fell_back and json.loads(c[1])["status"] == status


FLAGS = st.sampled_from([["--log", "log"], ["--log=log"], ["--log-format", "json"], ["--log-format=text"],
                         ["--debug"], ["--debug=1"]])


@st.composite
def argvs(draw, root: str, cid: str) -> tuple[list[str], bool]:
    """An argv, and whether it is the form the launcher must answer itself."""
    if draw(st.booleans()):  # that form, or nearly
        flags = draw(st.lists(FLAGS | st.sampled_from([["--root", root], [f"--root={root}"]]), max_size=4))
        tail = draw(st.sampled_from([["state", cid], ["state", cid], ["state"], ["state", cid, "extra"],
                                     ["state", "-c"], ["state", "nope"], ["state", ""], ["state", "."],
                                     ["list"], ["state", "--", cid]]))
        has_root = any(f[0].startswith("--root") for f in flags)
        return [a for f in flags for a in f] + tail, has_root and tail == ["state", cid]
    tokens = st.sampled_from([["--root", root], [f"--root={root}"], ["--root", "rel"], ["--root="], ["--root"],
                              ["--log"], ["-x"], ["--bogus"], ["-"], ["--"], ["state"], [cid], ["extra"], [""],
                              ["--root", "/nonexistent"], ["--rootless", "x"]]) | FLAGS
    return [a for t in draw(st.lists(tokens, max_size=6)) for a in t], False


@pytest.mark.property
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=100)
@given(data=st.data())
def test_argv_forms_answer_as_python(launcher, pids, data, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "argv-root"
    cid = f"launcher-test-{os.getpid()}"  # not under the default root either
    if not (root / cid / "state.json").exists():
        write_state(root, cid, json.dumps({"id": cid, "status": "running", "pid": pids.live}).encode())
        write_state(root, "", json.dumps({"id": "", "status": "running", "pid": pids.live}).encode())
    argv, answered = data.draw(argvs(str(root), cid))
    py, c, fell_back = launcher.run(argv)
    assert c == py
    if answered:
        assert not fell_back and c[0] == 0, argv


def test_flags_in_each_form(launcher, pids, tmp_path):
    write_state(tmp_path, "c1", json.dumps({"id": "c1", "status": "running", "pid": pids.live}).encode())
    root = str(tmp_path)
    for argv in (["--root", root, "state", "c1"], [f"--root={root}", "state", "c1"],
                 ["--log", "x", "--log-format", "json", "--debug", "--root", root, "state", "c1"],
                 ["--log=x", "--log-format=text", "--debug=yes", f"--root={root}", "state", "c1"],
                 ["--root", "/elsewhere", "--root", root, "state", "c1"], ["--root", root + "/", "state", "c1"]):
        py, c, fell_back = launcher.run(argv)
        assert c == py and c[0] == 0 and not fell_back, argv
    for argv in (["--root", root, "state"], ["--root", root, "state", "c1", "x"], ["--root", root, "-x", "state", "c1"],
                 ["--root", root, "state", "-c1"], ["--root", "rel", "state", "c1"], ["--root"], [],
                 ["--root", root, "--log"], ["--root", root, "state", "c2"], ["--root", root, "state", "."],
                 ["--root", root, "state", ".."], ["--root", root, "state", "c1/"], ["--root", root, "list"],
                 ["--root", root, "--systemd-cgroup", "state", "c1"]):
        py, c, fell_back = launcher.run(argv)
        assert c == py and fell_back, argv


def test_the_empty_id_names_the_root_itself(launcher, pids, tmp_path):
    """os.path.join(root, "", "state.json") is root/state.json: Python answers it, so may the launcher."""
    write_state(tmp_path, "", json.dumps({"id": "", "pid": pids.live}).encode())
    py, c, fell_back = launcher.run(["--root", str(tmp_path), "state", ""])
    assert c == py and c[0] == 0 and not fell_back


def test_what_the_launcher_leaves_to_python(launcher, pids, tmp_path):
    """Each of these falls back (and so answers as Python does)."""
    root = str(tmp_path)
    good = {"id": "c1", "status": "running", "pid": pids.live}

    def with_raw(text: str) -> bytes:
        return (json.dumps(good)[:-1] + ', "junk": ' + text + "}").encode()

    cases = {
        "big": json.dumps({**good, "annotations": {"a": "x" * (1 << 20)}}).encode(),
        "deep": with_raw(nest(64).text),
        "dup": b'{"id": "c1", "pid": 1, "pid": ' + str(pids.live).encode() + b"}",
        "dup-escaped": b'{"id": "c1", "annotations": {"a": "1", "\\u0061": "2"}}',
        "surrogate": json.dumps({**good, "bundle": "\ud800"}).encode(),
        "surrogates-reversed": with_raw('"\\udc00\\ud800"'),
        "bigint": with_raw("1" * 601),
        "bad": json.dumps({**good, "status": "dancing"}).encode(),
    }
    for name, content in cases.items():
        write_state(tmp_path, "c1", content)
        py, c, fell_back = launcher.run(["--root", root, "state", "c1"])
        assert c == py and fell_back, name
    # the limits themselves are answered
    for content in (with_raw(nest(63).text), with_raw("1" * 600),
                    json.dumps({**good, "annotations": {"a": "x" * 1000}}).encode()):
        write_state(tmp_path, "c1", content)
        py, c, fell_back = launcher.run(["--root", root, "state", "c1"])
        assert c == py and not fell_back
    # a directory and a symlink to a file: os.path.isfile's answers
    os.remove(tmp_path / "c1" / "state.json")
    os.mkdir(tmp_path / "c1" / "state.json")
    assert launcher.run(["--root", root, "state", "c1"])[2]
    os.rmdir(tmp_path / "c1" / "state.json")
    (tmp_path / "real.json").write_text(json.dumps(good))
    os.symlink(tmp_path / "real.json", tmp_path / "c1" / "state.json")
    py, c, fell_back = launcher.run(["--root", root, "state", "c1"])
    assert c == py and not fell_back


def test_each_raw_byte_in_a_string_and_between_tokens(launcher, pids, tmp_path):
    """Raw control characters in strings are refused (strict); JSON's whitespace is
    only space, tab, newline and carriage return."""
    root = str(tmp_path)
    for byte in [*range(0x20), 0x7F, 0x0B, 0x0C]:
        for content in (b'{"id": "c1", "pid": %d, "bundle": "a%cb"}' % (pids.live, byte),
                        b'{"id": "c1",%c"pid": %d}' % (byte, pids.live)):
            write_state(tmp_path, "c1", content)
            py, c, _ = launcher.run(["--root", root, "state", "c1"])
            assert c == py, content
    for space in ("\u00a0", "\u3000", "\ufeff", "\u2028"):
        write_state(tmp_path, "c1", f'{{"id": "c1",{space}"pid": 1}}'.encode())
        py, c, fell_back = launcher.run(["--root", root, "state", "c1"])
        assert c == py and fell_back and py[0] == 1


@pytest.mark.parametrize("env, answered", [
    ({"LC_ALL": "C.UTF-8"}, True), ({"LC_ALL": "C"}, True), ({"LC_ALL": "POSIX"}, True),
    ({"LC_ALL": "C", "PYTHONUTF8": "0"}, False), ({"LC_ALL": "C", "PYTHONUTF8": "1"}, True),
    ({"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-16"}, False),
    ({"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "UTF-8:strict"}, True),
])
def test_locale_decides_who_reads_non_ascii(launcher, pids, tmp_path, env, answered):
    """A non-ASCII id or state is read as Python reads it only where Python decodes UTF-8."""
    cid = "c\u00e9\U0001f600"
    write_state(tmp_path, cid, json.dumps({"id": cid, "pid": pids.live, "status": "running",
                                           "annotations": {"\u00e9": "\u2603"}}, ensure_ascii=False).encode())
    base = {k: v for k, v in ENV.items() if k != "LC_ALL"}
    py, c, fell_back = launcher.run(["--root", str(tmp_path), "state", cid], env={**base, **env})
    assert c == py and fell_back == (not answered)


def test_stdout_errors_answer_as_python(launcher, pids, tmp_path):
    write_state(tmp_path, "c1", json.dumps({"id": "c1", "status": "running", "pid": pids.live}).encode())
    argv = [str(launcher.binary), "--root", str(tmp_path), "state", "c1"]
    pyargv = [sys.executable, "-S", str(launcher.script), *argv[1:]]
    for label, stdout in (("full", lambda: open("/dev/full", "wb")), ("closed", None)):
        results = []
        for cmd in (pyargv, argv):
            out = stdout() if stdout else None
            kw = {"stdout": out} if out else {"preexec_fn": lambda: os.close(1)}
            r = subprocess.run(cmd, stderr=subprocess.PIPE, env=ENV, **kw)
            if out:
                out.close()
            results.append((r.returncode, r.stderr))
        assert results[0] == results[1], label
    for cmd in (pyargv, argv):  # a reader gone: exit 1, nothing on stderr
        read, write = os.pipe()
        os.close(read)
        r = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, env=ENV)
        os.close(write)
        assert (r.returncode, r.stderr) == (1, b""), cmd


def test_tables_match_python():
    """The launcher's copies of STATE_FIELDS, STATUSES and OCI_VERSION."""
    text = SOURCE.read_text()
    names = {str: "T_STR", int: "T_INT", type(None): "T_NONE", dict: "T_DICT", list: "T_LIST", bool: "T_BOOL"}
    table = re.search(r"STATE_FIELDS\[\] = \{(.*?)\n\};", text, re.S).group(1)
    fields = {m[1]: set(m[2].replace(" ", "").split("|"))
              for m in re.finditer(r'\{"(\w+)", ([\w |]+)\}', table)}
    assert fields == {k: {names[t] for t in types} for k, types in STATE_FIELDS.items()}
    assert re.search(r"STATUSES\[\] = \{(.*?)\};", text).group(1) == ", ".join(f'"{s}"' for s in STATUSES)
    assert f'#define OCI_VERSION "{OCI_VERSION}"' in text


@pytest.mark.parametrize("argv, answered", [
    (["delete", "--force", "gone"], True),
    (["delete", "-f", "gone"], True),
    (["--root", "{root}", "delete", "--force", "gone"], True),
    (["--root={root}", "--log", "/dev/null", "delete", "-f", "a.b_c+d-e"], True),
    (["--root", "{root}", "delete", "--force", "here"], False),       # it exists: Python deletes it
    (["--root", "{root}", "delete", "gone"], False),                  # without --force: an error
    (["--root", "{root}", "--debug", "delete", "--force", "gone"], False),  # Python logs
    (["--root", "{root}", "delete", "--force", "bad/id"], False),     # Python names the bad id
    (["--root", "{root}", "delete", "--force", ".."], False),
    (["--root", "{root}", "delete", "--force", "x" * 256], False),
    (["--root", "rel", "delete", "--force", "gone"], False),          # Python refuses the root
    (["--root", "{root}/here/state.json", "delete", "--force", "gone"], False),  # ENOTDIR
    (["--root", "{root}", "delete", "--force", "gone", "more"], False),
])
def test_delete_force_of_a_missing_container(launcher, pids, tmp_path, argv, answered):
    """`delete --force` of what does not exist is nothing to do (exit 0), without Python."""
    write_state(tmp_path, "here", json.dumps({"id": "here", "status": "stopped"}).encode())
    argv = [a.replace("{root}", str(tmp_path)) for a in argv]
    if answered:
        py, c, fell_back = launcher.run(argv)
        assert c == (0, b"", b"") == py and not fell_back
        return
    mark = launcher.work / "fell-back"
    mark.unlink(missing_ok=True)
    subprocess.run([str(launcher.binary), *argv], capture_output=True, cwd=launcher.work,
                   env={**ENV, "RUNV_TEST_FELL_BACK": str(mark)})
    assert mark.exists()
