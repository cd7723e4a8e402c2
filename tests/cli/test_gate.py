"""`loadkit gate` against a real `loadkit serve`: what a person on call types, with its exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from loadkit.cli import cli
from tests.conftest import NOWHERE
from tests.webhook.conftest import Serve


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("gate")
    (tmp / "token").write_text("s3cret\n")
    server = Serve(tmp, "--token-file", str(tmp / "token")).start()
    yield server
    server.stop()


def gate(serve: Serve, *args: str, token: str | None = "s3cret") -> tuple[int, str, str]:
    env = {"LOADKIT_TOKEN": token} if token else {}
    result = CliRunner().invoke(cli, ["gate", *args, "--server", serve.url], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def hook(serve: Serve, kind: str, name: str, **metadata: str) -> int:
    body = {"name": name, "namespace": "bruno", "phase": "Progressing", "checksum": "c1", "metadata": metadata}
    return serve.hook(kind, body).status_code


def test_approve_and_status(serve: Serve) -> None:
    assert hook(serve, "confirm-promotion", "approve-me", gate="manual") == 403
    code, out, _ = gate(serve, "approve", "bruno/approve-me", "--hook", "confirm-promotion", "--reason", "LGTM")
    assert code == 0 and "approved confirm-promotion of analysis" in out
    assert hook(serve, "confirm-promotion", "approve-me", gate="manual") == 200
    code, out, _ = gate(serve, "status", "bruno/approve-me", "-o", "json", token=None)  # reading needs no token
    status = json.loads(out)
    assert code == 0 and status["analysis"]["checksum"] == "c1"
    gates = [(g["hook"], g["state"], g["reason"]) for g in status["gates"]]
    assert gates == [("confirm-promotion", "approved", "LGTM")]


def test_halt_then_rollback_then_cancel(serve: Serve) -> None:
    assert hook(serve, "rollback", "halt-me") == 404
    assert gate(serve, "halt", "bruno/halt-me", "--reason", "DB migration")[0] == 0
    assert hook(serve, "confirm-traffic-increase", "halt-me") == 403
    code, out, _ = gate(serve, "rollback", "bruno/halt-me", "--reason", "checkout errors")
    assert code == 0 and "rollback opened" in out
    assert hook(serve, "rollback", "halt-me") == 200
    assert gate(serve, "rollback", "bruno/halt-me", "--cancel")[0] == 0
    assert hook(serve, "rollback", "halt-me") == 404


@pytest.mark.parametrize(("args", "token", "code", "message"), [
    pytest.param(["approve", "bruno/x"], None, 2, "needs the server's bearer token", id="no-token"),
    pytest.param(["approve", "bruno/x"], "wrong", 2, "the server refused: missing or wrong bearer token",
                 id="wrong-token"),
    pytest.param(["approve", "bruno-x"], "s3cret", 2, "'bruno-x' is not NAMESPACE/NAME", id="bad-name"),
    pytest.param(["rollback", "bruno/nothing-open"], "s3cret", 2, "no analysis of bruno/nothing-open is open",
                 id="nothing-to-roll-back"),
    pytest.param(["approve", "bruno/x", "--hook", "rollout"], "s3cret", 2, "Invalid value for '--hook'",
                 id="bad-hook"),
])
def test_refusals_exit_2_with_the_reason(serve: Serve, args: list[str], token: str | None, code: int,
                                        message: str) -> None:
    got, _, err = gate(serve, *args, token=token)
    assert got == code and message in err and "Traceback" not in err


def test_an_unreachable_server_exits_3() -> None:
    result = CliRunner().invoke(cli, ["gate", "status", "bruno/x", "--server", NOWHERE])
    assert result.exit_code == 3 and "cannot reach loadkit serve" in result.stderr
