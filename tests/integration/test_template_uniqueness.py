"""Two guests restored from one template (runv/qemu/template.py) share its
memory image: what must be unique per VM must still differ between them after
HELLO reseeded each kernel's random state (kernel/agent/restore.c). What stays
shared by design (the kernel's and the agent's own layout) is documented in
docs/security.md (VM templates)."""
from __future__ import annotations

import os
import threading

from test_template import bundle, cache, guest, machine, run_container  # noqa: F401 - fixtures

from runv.agent import protocol as P
from runv.qemu import template
from runv.sandbox.shares import exports

PROBE = ("cat /proc/sys/kernel/random/uuid; "
         "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; "
         "grep -F '[stack]' /proc/self/maps; grep -F '[vdso]' /proc/self/maps; "
         "cat /proc/sys/kernel/random/boot_id; cat /proc/sys/kernel/randomize_va_space")
FIELDS = ("uuid", "urandom", "stack", "vdso", "boot_id", "randomize_va_space")


def test_two_restored_guests_differ(guest, cache, tmp_path, rootfs_template):  # noqa: F811
    bundles = [bundle(tmp_path, rootfs_template, name, False) for name in ("one", "two")]
    for _, config, _ in bundles:
        config["process"]["args"] = ["sh", "-c", PROBE]
    # The shares as the shim names them: QEMU's jail builds each bind's export.
    shapes = [machine(guest, *exports(P.SHARE_ROOT_TAG, os.path.join(b, "rootfs"), False, plan.binds))
              for b, _, plan in bundles]
    path = template.ensure(shapes[0], wait=True)
    assert path, os.listdir(cache)

    vms, results = [], [None, None]
    try:
        for i, m in enumerate(shapes):
            state_dir = tmp_path / f"vm{i}"
            state_dir.mkdir()
            vms.append(template.restore(m, path, P.PORT_NAME, str(state_dir)))

        def drive(i: int) -> None:
            try:
                results[i] = run_container(vms[i], bundles[i][1], bundles[i][2])
            except BaseException as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for vm in vms:
            vm.kill()
            vm.agent.close()
            vm.qmp.close()
            os.close(vm.pidfd)

    seen = []
    for i, r in enumerate(results):
        assert not isinstance(r, BaseException) and r is not None, f"vm{i}: {r!r}"
        status, out, err, _, _ = r
        assert status == 0, f"vm{i}: status {status}, stderr {err!r}"
        lines = out.decode().splitlines()
        assert len(lines) == len(FIELDS), out
        seen.append(dict(zip(FIELDS, lines, strict=False)))
    one, two = seen
    print(f"restored from one template:\n  {one}\n  {two}")
    # boot_id is made at its first read, after the restore: unique too (while
    # nothing reads it before the template is saved)
    for field in ("uuid", "urandom", "boot_id"):
        assert one[field] != two[field], f"both guests read the same {field}: {one[field]}"
    assert one["randomize_va_space"] == "2", one
    # a new process's layout comes from the reseeded RNG at its exec
    assert one["stack"] != two["stack"], f"both new processes have the same stack: {one['stack']}"
    assert one["vdso"] != two["vdso"], f"both new processes have the same vDSO: {one['vdso']}"
