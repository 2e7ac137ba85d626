"""Errors across the shim's socket and the agent's port: one decoder each, the errno kept."""
import struct

import pytest

from runv import errors
from runv.agent import protocol as P
from runv.agent.link import agent_error
from runv.agent.protocol import Msg


def test_agent_error_keeps_the_guest_errno_and_escapes_its_text():
    payload = struct.pack("<i", 2) + b"no such file\x1b[31m"
    e = agent_error(P.Frame(Msg.ERROR, 1, payload))
    assert isinstance(e, errors.AgentError) and e.errno == 2
    assert "\x1b" not in str(e) and str(e).startswith("no such file")


@pytest.mark.parametrize("e", [errors.NotFound("gone"), errors.Exists("twice"), errors.InvalidState("no"),
                               errors.InvalidArgument("bad"), errors.SpecError("spec"),
                               errors.QemuError("qemu"), errors.CorruptState("corrupt"),
                               errors.AgentError("refused", 13), errors.RunvError("plain")])
def test_errors_round_trip_the_wire(e):
    back = errors.from_wire(errors.to_wire(e))
    assert type(back) is type(e) and str(back) == str(e)
    assert getattr(back, "errno", None) == getattr(e, "errno", None)


def test_a_transition_error_arrives_as_invalid_state():
    back = errors.from_wire(errors.to_wire(errors.InvalidTransition("c", "stopped", "running")))
    assert type(back) is errors.InvalidState and "from stopped to running" in str(back)


@pytest.mark.parametrize("reply", [{"error": "x", "kind": "KeyError"}, {"error": "x", "kind": ["AgentError"]},
                                   {"error": "x", "kind": "AgentError", "errno": "13"}, {"error": "x"},
                                   {"error": "x", "kind": "__class__"}])
def test_an_unknown_kind_is_a_plain_runv_error(reply):
    back = errors.from_wire(reply)
    assert isinstance(back, errors.RunvError) and str(back) == "x"
    assert getattr(back, "errno", 0) == 0
