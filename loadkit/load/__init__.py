"""Locust as an engine: profiles -> stages -> a Locust child process -> exact stats.

Never imports locust itself; `locust_plugin` is loaded only by the Locust child.
"""

from loadkit.load.journeys import JOURNEYS, check_locustfile_syntax, locate_locustfile
from loadkit.load.preflight import preflight, validate_target
from loadkit.load.profiles import BUILTIN_PROFILES, Profile, get_profile
from loadkit.load.result import assess_generator, build_result
from loadkit.load.runner import LoadOutcome, LoadPlan, LocustDriver
from loadkit.load.shapes import ShapeKind, Stage, build_stages, tick, total_duration

__all__ = [
    "BUILTIN_PROFILES", "JOURNEYS", "LoadOutcome", "LoadPlan", "LocustDriver", "Profile", "ShapeKind",
    "Stage", "assess_generator", "build_result", "build_stages", "check_locustfile_syntax", "get_profile",
    "locate_locustfile", "preflight", "tick", "total_duration", "validate_target",
]
