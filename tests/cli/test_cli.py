"""The CLI as a user meets it: help, exit codes, bad input, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NOWHERE, ROOT, run_loadkit

InProcess = Callable[..., subprocess.CompletedProcess[str]]


def test_help_does_not_import_heavy_engines() -> None:
    code = (
        "import sys\n"
        "from loadkit.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "for sub in (['run', '--help'], ['sandbox', 'up', '--help'], ['demo', '--help'], ['serve', '--help'],\n"
        "            ['score', '--help'], ['compare', '--help'], ['chaos', 'run', '--help']):\n"
        "    try:\n        cli.main(sub, standalone_mode=False)\n    except SystemExit:\n        pass\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(out.stdout.strip().splitlines()[-1].split(","))
    assert not loaded & {"locust", "gevent", "kubernetes", "chaoslib", "aiohttp", "pydantic", "hdrh", "fastapi",
                          "uvicorn", "scipy", "numpy", "prometheus_api_client", "requests"}


def test_help_lists_commands_and_exit_codes() -> None:
    out = run_loadkit("--help")
    assert out.returncode == 0
    for word in ("run", "profiles", "sandbox", "demo", "Exit codes", "130"):
        assert word in out.stdout


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "loadkit", "--version"], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert out.returncode == 0 and "loadkit" in out.stdout


def test_profiles_json_lists_every_builtin(tmp_path: Path) -> None:
    out = run_loadkit("profiles", "--output", "json", cwd=tmp_path)  # no loadkit.yaml here to add any
    assert out.returncode == 0
    data = json.loads(out.stdout)
    names = {p["name"] for p in data["profiles"]}
    assert names == {"smoke", "steady", "ramp", "step", "spike", "soak", "stress"}
    step = next(p for p in data["profiles"] if p["name"] == "step")
    assert [s["users"] for s in step["stages"]] == [5, 10, 25]


def test_profiles_include_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "loadkit.yaml").write_text("profiles:\n  burst:\n    shape: spike\n    users: 30\n")
    out = run_loadkit("profiles", cwd=tmp_path)
    assert out.returncode == 0 and "burst" in out.stdout and "spike" in out.stdout


T = ("run", "--target", NOWHERE)  # a usage error is refused before any connection


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param([*T, "--profile", "nope"], "unknown profile 'nope'", id="unknown-profile"),
        pytest.param([*T, "--duration", "5x"], "bad duration '5x'", id="bad-duration"),
        pytest.param([*T, "--users", "-3"], "--users", id="negative-users"),
        pytest.param([*T, "--spawn-rate", "0"], "--spawn-rate", id="zero-spawn-rate"),
        pytest.param([*T, "--header", "no-colon"], "bad header 'no-colon'", id="bad-header"),
        pytest.param(["run", "--target", "not a url"], "bad target 'not a url'", id="bad-target"),
        pytest.param(["run", "--target", "http://bob:s3cret@127.0.0.1:9/canary"],
                     "bad target http://***@127.0.0.1:9...: credentials in the URL", id="credentials-in-target"),
        pytest.param(["compare", "--target", "http://127.0.0.1:9", "--baseline", "https://bob:s3cret@127.0.0.1:9"],
                     "give them as a header instead", id="credentials-in-baseline"),
        pytest.param(["compare", "--target", "http://127.0.0.1:9", "--baseline", "nowhere"],
                     "bad --baseline 'nowhere'", id="bad-baseline"),
        pytest.param([*T, "--locustfile", "missing.py"], "locustfile 'missing.py' not found", id="missing-locustfile"),
        pytest.param([*T, "--config", "missing.yaml"], "cannot read config file", id="missing-config"),
        pytest.param(["run"], "Missing option '--target'", id="no-target"),
        pytest.param(["run", "--target", "http://[::1"], "Invalid IPv6 URL", id="bad-ipv6"),
        pytest.param([*T, "--junit", "/proc/no/such/dir/x.xml"], "cannot write --junit", id="unwritable-junit"),
        pytest.param([*T, "--report-dir", "/proc/version/x"], "cannot write --report-dir",
                     id="unwritable-report-dir"),
        pytest.param([*T, "-p", "step", "-t", "2s"], "every stage needs at least 1s", id="too-short-for-stages"),
        pytest.param(["frobnicate"], "No such command", id="unknown-command"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(loadkit_in_process: InProcess, args: list[str],
                                                needle: str) -> None:
    out = loadkit_in_process(*args)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert "s3cret" not in out.stderr  # a credential is never echoed


def test_a_usage_error_through_the_real_entry_point(tmp_path: Path) -> None:
    """One usage error through `python -m loadkit` itself: the in-process cases above call the same main()."""
    out = run_loadkit(*T, "--profile", "nope", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "error: unknown profile 'nope'" in out.stderr
    assert "smoke" in out.stderr and "stress" in out.stderr and "fix:" in out.stderr  # the known ones
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_invalid_yaml_names_file_and_line(loadkit_in_process: InProcess, tmp_path: Path) -> None:
    (tmp_path / "loadkit.yaml").write_text("profiles:\n  x:\n    users: 5\n    user: 6\n")
    out = loadkit_in_process(*T)  # runs in tmp_path, where it finds loadkit.yaml
    assert out.returncode == 2
    assert "loadkit.yaml:4: profiles.x.user: unknown key" in out.stderr
    assert "did you mean 'users'" in out.stderr


def test_locustfile_syntax_error_names_the_line(loadkit_in_process: InProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from locust import HttpUser\n\nclass U(HttpUser:\n    pass\n")
    out = loadkit_in_process(*T, "--locustfile", str(bad))
    assert out.returncode == 2
    assert f"{bad}:3: syntax error" in out.stderr


def test_an_unexpected_error_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import loadkit.config
    from loadkit.cli import cli

    def broken(_path: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(loadkit.config, "load_config", broken)
    result = CliRunner().invoke(cli, ["profiles"])
    assert result.exit_code == 3
    assert "internal error: RuntimeError: boom" in result.stderr
    assert "LOADKIT_DEBUG=1" in result.stderr and "Traceback" not in result.stderr
