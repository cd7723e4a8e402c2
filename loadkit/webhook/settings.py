"""Settings of `loadkit serve`, validated at start-up (bad regexes, profiles or sets stop it early)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadkit.config import Config
from loadkit.errors import UsageError
from loadkit.webhook.policy import Policy

DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ServeSettings:
    config: Config
    db_path: Path
    policy: Policy
    max_concurrent_runs: int = 4
    max_body_bytes: int = DEFAULT_MAX_BODY
    token: str | None = None
    public_url: str | None = None
    retention_s: float = 30 * 86400.0

    def run_url(self, run_id: str) -> str:
        return f"{(self.public_url or '').rstrip('/')}/runs/{run_id}"


def compile_patterns(patterns: Sequence[str], option: str) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            example = r"'^http://[a-z0-9-]+-canary\.bruno\.svc(:\d+)?(/.*)?$'"
            raise UsageError(f"{option} {pattern!r} is not a valid regular expression: {exc}",
                             hint=f"it is matched against the whole value, e.g. {example}") from None
    return compiled


def read_token(path: Path | None, env_value: str | None) -> str | None:
    """The bearer token for admin endpoints: --token-file, else LOADKIT_TOKEN, else none."""
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
        if not token:
            raise UsageError(f"--token-file {path} is empty", hint="put the token on the first line")
        return token
    return env_value.strip() if env_value and env_value.strip() else None
