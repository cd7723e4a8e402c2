"""`loadkit sandbox up` as a command: option validation, port conflicts, text output, Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from loadkit.cli import cli
from loadkit.errors import TargetError
from loadkit.sandbox import SandboxProcess, Version, VersionSpec
from loadkit.sandbox._pods import ReplicaSet

UP = [sys.executable, "-m", "loadkit", "sandbox", "up"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--canary-weight", "101"),
        ("--canary-weight", "-1"),
        ("--primary-error-rate", "1.5"),
        ("--canary-error-rate", "-0.1"),
        ("--canary-error-rate", "lots"),
        ("--pods", "0"),
        ("--port", "70000"),
        ("--admin-port", "-1"),
        ("--primary-latency-ms", "-5"),
        ("--output", "xml"),
        ("--namespace", "Bad_NS"),
        ("--retries", "-1"),
        ("--retries", "11"),
        ("--retry-on", "5xx,bogus"),
        ("--retry-on", "200"),
        ("--per-try-timeout", "0"),
        ("--per-try-timeout", "soon"),
        ("--timeout", "2h"),
    ],
)
def test_bad_option_exits_2_naming_it(option: str, value: str) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "up", option, value])
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.output


def test_help_documents_every_option() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "up", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--admin-port",
        "--pods",
        "--canary-weight",
        "--primary-error-rate",
        "--canary-error-rate",
        "--primary-latency-ms",
        "--canary-latency-ms",
        "--retries",
        "--retry-on",
        "--per-try-timeout",
        "--timeout",
        "--namespace",
        "--output",
    ):
        assert option in result.output


@pytest.mark.parametrize("args", [
    pytest.param(["--retry-on", "5xx"], id="retry-on"),
    pytest.param(["--per-try-timeout", "1s"], id="per-try"),
])
def test_retry_settings_without_retries_are_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "up", *args])
    assert result.exit_code == 2, result.output
    assert f"error: {args[0]} has no effect without --retries" in result.output
    assert "--retries 2" in result.output


def test_importing_the_package_stays_light() -> None:
    heavy = "{'aiohttp', 'prometheus_client', 'pydantic'}"
    code = f"import sys, loadkit.sandbox; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


@pytest.fixture()
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--port", "--admin-port"])
def test_port_in_use_is_a_usage_error(busy_port: int, option: str, hermetic_env: dict[str, str]) -> None:
    args = (
        ["--port", str(busy_port)] if option == "--port" else ["--port", "0", "--admin-port", str(busy_port)]
    )
    result = subprocess.run([*UP, *args], capture_output=True, text=True, timeout=30, env=hermetic_env)
    assert result.returncode == 2
    assert f"error: {option} {busy_port}: 127.0.0.1:{busy_port} is already in use" in result.stderr
    assert "fix:" in result.stderr and "--port 0" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_text_output_then_ctrl_c_exits_130(hermetic_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [*UP, "--port", "0", "--pods", "1", "--canary-weight", "25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hermetic_env,
    )
    lines: list[str] = []

    def read_banner() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                return

    reader = threading.Thread(target=read_banner, daemon=True)
    reader.start()
    reader.join(30)
    try:
        banner = "".join(lines)
        assert banner.endswith("Press Ctrl-C to stop.\n"), banner
        assert "traffic  http://127.0.0.1:" in banner and "/metrics" in banner
        assert "25% canary, 75% primary" in banner
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "stopping (SIGINT)" in stderr


def test_sandbox_process_reports_a_failed_start(hermetic_env: dict[str, str]) -> None:
    started = time.monotonic()
    with pytest.raises(TargetError) as caught:
        SandboxProcess(env=hermetic_env, extra_args=["--pods", "0"]).start()
    assert "exited with code 2 before it was ready" in caught.value.message
    assert "--pods" in caught.value.message  # the tail of the sandbox's stderr
    assert time.monotonic() - started < 15


def test_a_pod_that_cannot_start_is_a_clear_error() -> None:
    replica_set = ReplicaSet(VersionSpec(Version.CANARY, pods=1), "bruno", log=lambda line: None)
    replica_set.pods[0].argv = [
        sys.executable,
        "-c",
        "import sys; print('boom', file=sys.stderr); sys.exit(3)",
    ]

    async def start() -> None:
        try:
            await replica_set.start()
        finally:
            await replica_set.stop()

    with pytest.raises(TargetError) as caught:
        asyncio.run(start())
    assert "pod bruno-site-0 exited with code 3 before it was ready" in caught.value.message
    assert "boom" in caught.value.message
