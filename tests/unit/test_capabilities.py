"""Capability names -> bits, as linux/capability.h numbers them."""
import re

import pytest

from runv.errors import SpecError
from runv.oci.capabilities import BITS, CAPS, mask, masks


def test_numbers_match_the_kernel_header():
    with open("/usr/include/linux/capability.h") as f:
        header = dict(re.findall(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$", f.read(), re.M))
    header.pop("CAP_LAST_CAP", None)
    for name, bit in header.items():
        assert BITS.get(name) == int(bit), name
    assert len(CAPS) == len(header)


def test_masks_in_the_agents_order():
    caps = {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_KILL"], "inheritable": [],
            "permitted": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_NET_RAW"]}
    assert masks(caps) == [1 << 21, 1 << 5, 0, 1 << 5 | 1, 1 << 13]
    assert masks(None) == [0] * 5  # no capabilities at all, as runc
    assert mask(["CAP_CHECKPOINT_RESTORE"]) == 1 << 40


@pytest.mark.parametrize("name", ["CAP_FOO", "CAP_", ""])
def test_unknown_names_are_refused(name):
    with pytest.raises(SpecError, match=f'unknown capability "{name}"'):
        masks({"bounding": ["CAP_KILL", name]})
