"""Test-wide settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# A loaded CI machine must not turn a slow example into a failure; a real
# counterexample is still reported with the blob to reproduce it.
settings.register_profile("tcplab", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tcplab")
