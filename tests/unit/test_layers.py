"""The host package's layers, checked on its source: each module imports only
from its own layer or the layers below (docs/architecture.md).

    commands, cli, fast                      the command line
    container, launch, exec, orphan, ...     a container's lifecycle, from the CLI
    sandbox                                  the VM side of a container, in the shim
    agent, oci, host, qemu,                  the wire, the bundle, the host, QEMU;
      state, status, ocistate                  the container's record, which both sides move
    errors, log, files, guest_text           used by all

A layer may use its own modules and any below it.
"""
import ast
import os

import pytest

RUNV = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "runv")

LAYERS = [  # lowest first
    {"runv", "runv.errors", "runv.log", "runv.files", "runv.guest_text", "runv.faultpoint", "runv.daemon",
     "runv.tinyjson"},
    {"runv.agent", "runv.oci", "runv.host", "runv.host.rtnetlink", "runv.qemu", "runv.state", "runv.status",
     "runv.ocistate"},
    {"runv.sandbox"},
    {"runv.container", "runv.launch", "runv.exec", "runv.orphan", "runv.foreground", "runv.member"},
    {"runv.commands", "runv.cli", "runv.fast"},
]


def layer(module: str) -> int:
    """The layer of a module: that of its longest prefix named in LAYERS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for i, names in enumerate(LAYERS):
            if prefix in names:
                return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")


def modules() -> dict[str, str]:
    found = {}
    for dirpath, _, files in os.walk(RUNV):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(RUNV))[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


def imports(path: str, package: str) -> set[str]:
    """Every runv module `path` imports, at the top or inside a function."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from runv import x` imports the module runv.x when there is one
            out |= {f"{base}.{a.name}" for a in node.names} | {base}
    return {m for m in out if m == "runv" or m.startswith("runv.")}


ALL = modules()


def known(name: str) -> str:
    """`name` or the longest prefix of it that is a module of the package."""
    while name not in ALL and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


@pytest.mark.parametrize("module", sorted(ALL))
def test_no_module_imports_upward(module):
    package = module if ALL[module].endswith("__init__.py") else module.rsplit(".", 1)[0]
    mine = layer(module)
    upward = sorted(m for m in {known(i) for i in imports(ALL[module], package)} if layer(m) > mine)
    assert not upward, f"{module} (layer {mine}) imports from above: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from runv.sandbox import boot\n    from runv import container\n")
    found = {known(i) for i in imports(str(bad), "runv.host")}
    assert {"runv.sandbox.boot", "runv.container"} <= found
    assert max(layer(m) for m in found) > layer("runv.host.bad")
