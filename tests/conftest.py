"""Shared fixtures. Tests are hermetic: no KUBECONFIG, no LOADKIT_*/LOCUST_* from the caller."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("LOADKIT_", "LOCUST_")) or key == "KUBECONFIG":
            monkeypatch.delenv(key, raising=False)


def loadkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadkit", *args]


def run_loadkit(*args: str, timeout: float = 120, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    clean.update(env or {})
    return subprocess.run(loadkit_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=clean, check=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
