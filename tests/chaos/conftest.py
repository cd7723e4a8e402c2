"""Chaos tests: real sandboxes, real Locust, real chaoslib; Kubernetes is tests/chaos/fake_k8s.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd

EXPERIMENTS = ROOT / "experiments"


def faults(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sandbox.admin_url}/faults", timeout=10).json()["faults"])


def pods(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in httpx.get(f"{sandbox.admin_url}/pods", timeout=10).json()["pods"]}


def chaos_env(sandbox: SandboxProcess, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    env["LOADKIT_SANDBOX_ADMIN_URL"] = sandbox.admin_url
    return {**env, **(extra or {})}


def chaos_run(sandbox: SandboxProcess, experiment: str | Path, *args: str,
              env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, Any] | None, str]:
    """`loadkit chaos run` as a user runs it: (exit code, JSON result or None, stderr)."""
    out = subprocess.run(
        loadkit_cmd("chaos", "run", str(EXPERIMENTS / experiment if isinstance(experiment, str) else experiment),
                    "--target", f"{sandbox.traffic_url}/canary", "--cooldown", "3s", "--recovery-window", "3s",
                    "-o", "json", *args),
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or chaos_env(sandbox), check=False,
    )
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


def interrupt_mid_fault(sandbox: SandboxProcess, experiment: str, sig: signal.Signals, *args: str,
                        env: dict[str, str] | None = None,
                        fault_active: Callable[[], bool] | None = None) -> tuple[int, dict[str, Any], str]:
    """Start a chaos run, wait until its fault is in place, send `sig`, collect the result."""
    path = experiment if experiment.startswith("/") else str(EXPERIMENTS / experiment)
    proc = subprocess.Popen(
        loadkit_cmd("chaos", "run", path, "--target", f"{sandbox.traffic_url}/canary",
                    "--cooldown", "2s", "-o", "json", *args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or chaos_env(sandbox))
    active = fault_active or (lambda: bool(faults(sandbox)))
    deadline = time.monotonic() + 60
    while not active():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=90)
    return proc.returncode, json.loads(stdout), stderr


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)
