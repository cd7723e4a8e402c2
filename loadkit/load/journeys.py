"""Find locustfiles: a built-in journey name (`website`, `api`) or a path.

The journeys live in the repository's top-level `locustfiles/`; wheels carry a copy under
`loadkit/_bundled/locustfiles` (see pyproject.toml), so both layouts are searched.
"""

from __future__ import annotations

from pathlib import Path

from loadkit.errors import ConfigError

JOURNEYS = {
    "website": "website.py",
    "api": "api.py",
}

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def bundled_dir(kind: str) -> Path:
    """The directory holding shipped `locustfiles` or `experiments`, installed or in a checkout."""
    for candidate in (_PACKAGE_DIR / "_bundled" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"loadkit's bundled {kind}/ directory is missing", hint="reinstall loadkit")


def locate_locustfile(spec: str, base_dir: Path | None = None) -> Path:
    """Resolve a journey name or a locustfile path (relative to `base_dir`, e.g. the config's folder)."""
    if spec in JOURNEYS:
        return bundled_dir("locustfiles") / JOURNEYS[spec]
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if not path.is_file():
        names = ", ".join(JOURNEYS)
        raise ConfigError(
            f"locustfile {spec!r} not found",
            hint=f"give a path to a Locust file or a built-in journey name ({names})",
        )
    if path.suffix != ".py":
        raise ConfigError(f"locustfile {spec!r} is not a .py file", hint="point --locustfile at a Locust file")
    return path.resolve()


def check_locustfile_syntax(path: Path) -> None:
    """Fail fast, with file and line, on a locustfile that cannot even compile (no import)."""
    try:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: syntax error in locustfile: {exc.msg}",
            hint="fix the Python syntax, then check it with: python -m py_compile " + str(path),
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read locustfile {path}: {exc}") from exc
