"""Unit tests of run.py's TAP verdicts (no root, no runtime, no suite needed).

    python3 -m unittest conformance/test_run.py     (or pytest conformance/)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def verdict(text: str, rc: int = 0, timed_out: bool = False, stderr: str = "") -> run.Result:
    return run.judge(run.parse_tap(text), rc, timed_out, stderr, 30, 0.0)


class Verdicts(unittest.TestCase):
    def test_all_ok_and_skips_pass(self):
        r = verdict("TAP version 13\nok 1 - a\nok 2 # SKIP not set\n1..2\n")
        self.assertEqual(r.status, "PASS")

    def test_not_ok_fails_with_reason_from_following_yaml(self):
        r = verdict("TAP version 13\nok 1 - a\nnot ok 2 - b is set\n  ---\n"
                    "  expected: 1\n  actual: 2\n  ...\n1..2\n")
        self.assertEqual(r.status, "FAIL")
        self.assertEqual(r.reason, "not ok 2 - b is set | expected: 1; actual: 2")

    def test_todo_is_not_a_failure(self):
        self.assertEqual(verdict("ok 1\nnot ok 2 # TODO later\n1..2\n").status, "PASS")

    def test_indented_not_ok_is_a_quote_not_a_result(self):
        text = ("TAP version 13\n  ---\n  stdout: |\n    TAP version 13\n"
                "    not ok 1 - inner\n  ...\nok 1 - outer\n1..1\n")
        self.assertEqual(verdict(text).status, "PASS")

    def test_reason_prefers_runtimetest_failure_in_preceding_block(self):
        text = ("TAP version 13\n  ---\n  stdout: |\n    ok 1 - x\n"
                "    not ok 2 - inner broke\n  ...\nnot ok 1 - outer\n"
                "  ---\n  stdout: |\n    ok 1 - y\n  ...\nok 2 - next\n1..2\n")
        r = verdict(text)
        self.assertEqual(r.status, "FAIL")
        self.assertEqual(r.reason, "not ok 1 - outer | not ok 2 - inner broke")

    def test_orphan_error_diagnostic_fails(self):
        text = "TAP version 13\n  ---\n  error: |-\n    Hooks MUST be called\n  ...\n1..0\n"
        r = verdict(text)
        self.assertEqual(r.status, "FAIL")
        self.assertIn("Hooks MUST be called", r.reason)

    def test_error_attached_to_ok_result_passes(self):
        text = "TAP version 13\nok 1 - refused\n  ---\n  error: exit status 1\n  ...\n1..1\n"
        self.assertEqual(verdict(text).status, "PASS")

    def test_empty_output_exit_0_passes_exit_1_fails(self):
        self.assertEqual(verdict("").status, "PASS")
        r = verdict("", rc=1, stderr="failed to create the container\nboom\n")
        self.assertEqual((r.status, r.reason),
                         ("FAIL", "exit status 1: failed to create the container / boom"))

    def test_failure_with_nonzero_exit_names_both(self):
        r = verdict("not ok 1 - inner\n1..1\n", rc=1, stderr="MUST generate an error\n")
        self.assertEqual(r.reason, "not ok 1 - inner [exit status 1: MUST generate an error]")

    def test_plans_per_stream(self):
        two = "TAP version 13\nok 1\nok 2\n1..2\nTAP version 13\n1..0\n"
        self.assertEqual(verdict(two).status, "PASS")
        short = "TAP version 13\nok 1\n1..3\n"
        self.assertEqual(verdict(short).status, "FAIL")

    def test_timeout(self):
        r = verdict("ok 1 - a\n", timed_out=True)
        self.assertEqual((r.status, r.reason), ("TIMEOUT", "killed after 30s; last result: ok 1 - a"))


if __name__ == "__main__":
    unittest.main()
