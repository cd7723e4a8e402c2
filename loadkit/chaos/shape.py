"""The shape of a Chaos Toolkit experiment, checked before anything reads it.

chaoslib assumes its input is well formed and fails with a TypeError or AttributeError deep inside
when it is not (`method: [5]`, `provider: "python"`, a top-level list). Every such mistake is
named here with its field path and the fix, so it is a usage error (exit 2), never an internal one.

    check_shape(yaml.safe_load(text))   # ConfigError: method[0]: an activity must be a mapping, not 5
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any

from loadkit.errors import ConfigError

ACTIVITY_TYPES = ("action", "probe")
PROVIDER_TYPES = ("python", "process", "http")
_VARIABLE = re.compile(r"\$\{[^}]+\}")


def check_shape(experiment: Any) -> None:
    """Raise ConfigError naming the first field that is not what Chaos Toolkit expects."""
    if not isinstance(experiment, Mapping):
        raise ConfigError(f"the experiment must be a mapping (title, description, method, ...), not a "
                          f"{_kind(experiment)}", hint="see docs/chaos.md for an example")
    for key in ("title", "description"):
        _optional(experiment, key, str, key)
    for key in ("configuration", "secrets", "extensions"):
        if key == "extensions":
            _optional(experiment, key, list, key)
        else:
            _optional(experiment, key, Mapping, key)
    tags = _optional(experiment, "tags", list, "tags") or []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"tags[{i}]: a tag must be a non-empty string, not {tag!r}")
    _controls(experiment.get("controls"), "controls")
    hypothesis = _optional(experiment, "steady-state-hypothesis", Mapping, "steady-state-hypothesis")
    if hypothesis is not None:
        _optional(hypothesis, "title", str, "steady-state-hypothesis.title")
        _controls(hypothesis.get("controls"), "steady-state-hypothesis.controls")
        _activities(hypothesis.get("probes"), "steady-state-hypothesis.probes")
    if "method" in experiment and experiment["method"] is None:
        raise ConfigError("method: must be a list of activities (it may be empty), not null", hint="write method: []")
    _activities(experiment.get("method"), "method")
    _activities(experiment.get("rollbacks"), "rollbacks")


def _activities(items: Any, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise ConfigError(f"{where}: must be a list of activities, not a {_kind(items)}",
                          hint=f"write each activity as a list item: {where.split('.')[-1]}: [- type: action ...]")
    for i, activity in enumerate(items):
        check_activity(activity, f"{where}[{i}]")


def check_activity(activity: Any, where: str) -> None:
    if not isinstance(activity, Mapping):
        raise ConfigError(f"{where}: an activity must be a mapping (type, name, provider), not {activity!r}")
    if "ref" in activity:
        if not isinstance(activity["ref"], str) or not activity["ref"]:
            raise ConfigError(f"{where}.ref: must be the name of another activity, not {activity['ref']!r}")
        return
    named = f"{where} ({activity['name']})" if isinstance(activity.get("name"), str) else where
    kind = activity.get("type")
    if kind not in ACTIVITY_TYPES:
        raise ConfigError(f"{named}.type: must be action or probe, not {kind!r}")
    if not isinstance(activity.get("name"), str) or not activity["name"]:
        raise ConfigError(f"{where}.name: an activity needs a name (a string), not {activity.get('name')!r}")
    provider = activity.get("provider")
    if not isinstance(provider, Mapping):
        raise ConfigError(f"{named}.provider: must be a mapping (type: python, module, func, arguments), not "
                          f"{provider!r}", hint="e.g. provider: {type: python, module: loadkit.chaos.probes, "
                                                "func: rps}")
    _provider(provider, f"{named}.provider")
    pauses = _optional(activity, "pauses", Mapping, f"{named}.pauses")
    for key, value in (pauses or {}).items():
        if key not in ("before", "after"):
            raise ConfigError(f"{named}.pauses.{key}: unknown pause (before or after)")
        if not _pause_value(value):
            raise ConfigError(f"{named}.pauses.{key}: must be a number of seconds or \"${{variable}}\", not {value!r}")
    if "background" in activity and not isinstance(activity["background"], bool):
        raise ConfigError(f"{named}.background: must be true or false, not {activity['background']!r}")
    if "timeout" in activity and not _number(activity["timeout"]):
        raise ConfigError(f"{named}.timeout: must be a number of seconds, not {activity['timeout']!r}")
    _controls(activity.get("controls"), f"{named}.controls")
    tolerance = activity.get("tolerance")
    if isinstance(tolerance, Mapping) and tolerance.get("type") in ACTIVITY_TYPES:
        check_activity(tolerance, f"{named}.tolerance")


def _provider(provider: Mapping[str, Any], where: str) -> None:
    kind = provider.get("type")
    if kind not in PROVIDER_TYPES:
        raise ConfigError(f"{where}.type: must be python, process or http, not {kind!r}")
    if kind == "python":
        for key in ("module", "func"):
            if not isinstance(provider.get(key), str) or not provider[key]:
                raise ConfigError(f"{where}.{key}: a python provider needs a {key} (a string), not "
                                  f"{provider.get(key)!r}")
        _optional(provider, "arguments", Mapping, f"{where}.arguments")
    if kind == "process":
        if not isinstance(provider.get("path"), str):
            raise ConfigError(f"{where}.path: a process provider needs a path (a string)")
        arguments = provider.get("arguments")
        if arguments is not None and not isinstance(arguments, str | list):
            raise ConfigError(f"{where}.arguments: must be a string or a list, not a {_kind(arguments)}")
    if kind == "http" and not isinstance(provider.get("url"), str):
        raise ConfigError(f"{where}.url: an http provider needs a url (a string)")
    secrets = provider.get("secrets")
    if secrets is not None and not (isinstance(secrets, list) and all(isinstance(s, str) for s in secrets)):
        raise ConfigError(f"{where}.secrets: must be a list of secret names, not {secrets!r}")


def _controls(items: Any, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise ConfigError(f"{where}: must be a list of controls, not a {_kind(items)}")
    for i, control in enumerate(items):
        if not isinstance(control, Mapping) or not isinstance(control.get("provider"), Mapping):
            raise ConfigError(f"{where}[{i}]: a control must be a mapping with a name and a provider, not {control!r}")


def _optional(parent: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = parent.get(key)
    if value is not None and not isinstance(value, kind):
        wanted = "a mapping" if kind is Mapping else "a list" if kind is list else "a string" if kind is str \
            else kind.__name__
        raise ConfigError(f"{where}: must be {wanted}, not {value!r}")
    return value


def _pause_value(value: Any) -> bool:
    return _number(value) or (isinstance(value, str) and _VARIABLE.fullmatch(value) is not None)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    names: dict[type, str] = {list: "list", dict: "mapping", str: "string"}
    return names.get(type(value), type(value).__name__)
