"""The short soak of `make test` (`make soak` runs the long one)."""
from soak import run


def test_soak_short():
    report = run(cycles=50, parallel=4, seed=1)
    print("\n".join(report.lines()))
    assert report.failures == [] and report.leaked == [], "\n".join(report.lines())
    assert report.cycles == 50 and sum(report.faults.values()) >= 1
