import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # only the property tests need it
    pass
else:
    # `ci` (the default) runs a short profile; HYPOTHESIS_PROFILE=fuzz a long one.
    settings.register_profile("ci", max_examples=200, deadline=None)
    settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
