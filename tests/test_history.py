"""The history: one database for the webhook and every run, migrated from older files; what a result
becomes as a row; trends per series; `loadkit history`; and `loadkit run` keeping its result without
ever letting the store change the verdict."""

from __future__ import annotations

import enum
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from loadkit.cli import cli
from loadkit.cli._history import Keep
from loadkit.cli.history import parse_since
from loadkit.errors import StoreError
from loadkit.store import (
    SCHEMA_VERSION,
    History,
    HistoryKind,
    HistoryQuery,
    default_db_path,
    describe,
    save_result,
)
from loadkit.webhook.store import Store
from tests.chaos.test_chaos_result import build_chaos_result, scenario
from tests.conftest import ROOT, run_loadkit
from tests.http_servers import serve_http

OLD_DB = ROOT / "tests" / "data" / "loadkit-schema1.db"  # written by loadkit 1ba486f (make_loadkit_schema1.py)
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


class GameDayVerdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    HALTED = "halted"
    INTERRUPTED = "interrupted"


class GameDayLike(BaseModel):
    """The shape the game-day runner's result has (verdict, score, times, plan name): the contract."""

    schema_version: int = 1
    verdict: GameDayVerdict
    score: float | None
    started_at: datetime
    ended_at: datetime
    plan: str
    target: str = "http://bruno-site-canary.bruno:80"


def gameday(plan: str, score: float | None, hours: float, verdict: GameDayVerdict = GameDayVerdict.PASS,
            ) -> GameDayLike:
    start = T0 + timedelta(hours=hours)
    return GameDayLike(verdict=verdict, score=score, started_at=start, ended_at=start + timedelta(minutes=20),
                       plan=plan)


def entries(db: Path, **query: object) -> list[dict[str, object]]:
    store = History(db)
    try:
        return [e.model_dump(mode="json") for e in store.entries(HistoryQuery(**query))]  # type: ignore[arg-type]
    finally:
        store.close()


# -- one database, migrated -------------------------------------------------------------------------

def test_a_database_written_by_the_previous_loadkit_migrates_and_keeps_the_webhooks_state(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    shutil.copy(OLD_DB, db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
    save_result("gameday", gameday("bruno-site", 80, 0), db)  # the CLI's writer opens it first
    store = Store(db)
    try:
        [run] = store.list_runs("bruno", "bruno-site")
        assert (run.id, run.status.value, run.verdict, run.score) == ("r1", "completed", "pass", 100.0)
        assert store.verdict_counts() == {("completed", "pass"): 1}
        assert store.open_analysis("bruno", "bruno-site") is not None
        assert [f.reason for f in store.freezes()] == ["release freeze"]
    finally:
        store.close()
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    [row] = entries(db)
    assert (row["kind"], row["name"], row["score"]) == ("gameday", "bruno-site", 80.0)


def test_the_webhook_and_the_history_share_one_file_in_either_order(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    Store(db).close()  # the webhook creates it
    save_result("run", gameday("p", 1, 0), db, plan="smoke")
    Store(db).close()  # and opens it again: nothing to migrate twice
    assert len(entries(db)) == 1


def test_two_processes_opening_an_old_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    shutil.copy(OLD_DB, db)
    script = ("import sys; from loadkit.store import History; "
              "h = History(sys.argv[1]); h.close()")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    tables = sqlite3.connect(db).execute("SELECT COUNT(*) FROM sqlite_master WHERE name='history'").fetchone()[0]
    assert tables == 1 and sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_loadkit_is_refused_not_rewritten(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer loadkit"):
        History(db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_file_that_is_no_database_is_a_store_error(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not sqlite at all, but long enough to have a header " * 10)
    with pytest.raises(StoreError, match="cannot open"):
        save_result("run", gameday("p", 1, 0), db, plan="smoke")


def test_the_schema_refuses_a_kind_outside_the_enum(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    History(db).close()
    with pytest.raises(sqlite3.IntegrityError):
        sqlite3.connect(db).execute(
            "INSERT INTO history (id, kind, name, started_at, ended_at, recorded_at, verdict, schema_version, "
            "result_json) VALUES ('x', 'compare', 'n', 't', 't', 't', 'pass', 1, '{}')")


# -- a result as a row ------------------------------------------------------------------------------

def test_a_chaos_result_is_named_by_its_experiment_and_keeps_its_json(tmp_path: Path) -> None:
    result = build_chaos_result(scenario(12))
    db = tmp_path / "loadkit.db"
    entry = save_result(HistoryKind.CHAOS, result, db, canary="bruno/bruno-site")
    assert (entry.kind, entry.name, entry.target) == (HistoryKind.CHAOS, result.experiment, "http://canary")
    assert (entry.verdict, entry.score) == (result.verdict.value, result.score)
    assert (entry.namespace, entry.canary) == ("bruno", "bruno-site")
    store = History(db)
    try:
        stored = json.loads(store.result_json(entry.id) or "{}")
    finally:
        store.close()
    assert stored["schema_version"] == result.schema_version and stored["checks"]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({}, "bruno-site"),
    ({"plan": "weekly"}, "weekly"),
], ids=["plan-from-the-result", "plan-argument-wins"])
def test_a_game_day_is_named_by_its_plan(kwargs: dict[str, str], name: str) -> None:
    entry = describe("gameday", gameday("bruno-site", 72.5, 0, GameDayVerdict.HALTED), **kwargs)  # type: ignore[arg-type]
    assert (entry.name, entry.verdict, entry.score) == (name, "halted", 72.5)
    assert entry.ended_at - entry.started_at == timedelta(minutes=20)


def test_a_result_without_a_name_or_with_a_bad_canary_is_refused() -> None:
    class Nameless(BaseModel):
        verdict: str = "pass"
        started_at: datetime = T0

    with pytest.raises(ValueError, match="pass plan=NAME"):
        describe("gameday", Nameless())
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        describe("gameday", gameday("p", 1, 0), canary="bruno-site")
    with pytest.raises(ValueError):
        describe("compare", gameday("p", 1, 0))


@pytest.mark.parametrize(("env", "expected"), [
    ({"LOADKIT_DB": "/data/l.db", "XDG_STATE_HOME": "/state"}, Path("/data/l.db")),
    ({"XDG_STATE_HOME": "/state"}, Path("/state/loadkit/loadkit.db")),
    ({"XDG_STATE_HOME": "relative/state"}, Path.home() / ".local/state/loadkit/loadkit.db"),  # XDG: absolute only
    ({}, Path.home() / ".local/state/loadkit/loadkit.db"),
], ids=["LOADKIT_DB", "XDG_STATE_HOME", "relative-XDG-ignored", "home"])
def test_the_default_database(env: dict[str, str], expected: Path) -> None:
    assert default_db_path(env) == expected


def test_the_tests_never_write_the_callers_home() -> None:
    assert not str(default_db_path()).startswith(str(Path.home() / ".local"))


# -- trends -----------------------------------------------------------------------------------------

def test_a_game_days_trend_is_against_the_previous_judged_game_day_of_its_plan(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    for result in (gameday("bruno-site", 80, 0), gameday("other", 10, 1), gameday("bruno-site", 90, 24),
                   gameday("bruno-site", 0, 48, GameDayVerdict.INTERRUPTED), gameday("bruno-site", 85, 72)):
        save_result("gameday", result, db)
    rows = entries(db, kind=HistoryKind.GAMEDAY)
    assert [(r["name"], r["score"], r["trend"]) for r in rows] == [
        ("bruno-site", 85.0, -5.0),  # against 90: the interrupted one in between measured nothing
        ("bruno-site", 0.0, None),
        ("bruno-site", 90.0, 10.0),
        ("other", 10.0, None),
        ("bruno-site", 80.0, None),
    ]
    assert rows[0]["previous_id"] == rows[2]["id"]


def test_a_runs_trend_is_against_the_previous_run_of_the_same_profile_and_target(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    for target, score, hours in (("http://a", 100, 0), ("http://b", 50, 1), ("http://a", 75, 2)):
        result = gameday("x", score, hours).model_copy(update={"target": target})
        save_result("run", result, db, plan="smoke")
    save_result("run", gameday("x", 60, 3).model_copy(update={"target": "http://a"}), db, plan="steady")
    rows = entries(db)
    assert [(r["name"], r["target"], r["trend"]) for r in rows] == [
        ("steady", "http://a", None), ("smoke", "http://a", -25.0), ("smoke", "http://b", None),
        ("smoke", "http://a", None)]


def test_filters_keep_the_trend_of_rows_whose_base_is_filtered_out(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    save_result("gameday", gameday("bruno-site", 70, 0), db, canary="bruno/bruno-site")
    save_result("gameday", gameday("bruno-site", 95, 240), db, canary="bruno/bruno-site")
    save_result("chaos", gameday("x", 100, 241), db, plan="pod-kill", canary="shop/checkout")
    [latest] = entries(db, since=T0 + timedelta(days=5), namespace="bruno", canary="bruno-site")
    assert (latest["score"], latest["trend"]) == (95.0, 25.0)
    assert [r["kind"] for r in entries(db, kind=HistoryKind.CHAOS)] == ["chaos"]
    assert len(entries(db, limit=2)) == 2


# -- loadkit history --------------------------------------------------------------------------------

def history(*args: str) -> tuple[int, str, str]:
    out = CliRunner().invoke(cli, ["history", *args])
    return out.exit_code, out.stdout, out.stderr


def test_history_lists_newest_first_with_the_trend(tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    save_result("gameday", gameday("bruno-site", 80, 0), db, canary="bruno/bruno-site")
    save_result("gameday", gameday("bruno-site", 92.5, 24, GameDayVerdict.FAIL), db, canary="bruno/bruno-site")
    code, stdout, _ = history("--db", str(db))
    assert code == 0
    lines = [line for line in stdout.splitlines() if "bruno-site" in line]
    assert len(lines) == 2
    assert "2026-11-03 10:00" in lines[0] and "FAIL" in lines[0] and "92.5" in lines[0] and "+12.5" in lines[0]
    assert "(bruno/bruno-site)" in lines[0] and lines[1].rstrip().endswith("-")


def test_history_json_has_a_schema_version_and_reads_loadkit_db_from_env(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "env.db"
    save_result("gameday", gameday("bruno-site", 80, 0), db)
    save_result("gameday", gameday("bruno-site", 60, 1), db)
    monkeypatch.setenv("LOADKIT_DB", str(db))
    code, stdout, _ = history("-o", "json", "--kind", "gameday", "--since", "2026-11-01")
    assert code == 0
    body = json.loads(stdout)
    assert body["schema_version"] == 1 and body["db"] == str(db)
    assert [(e["score"], e["trend"]) for e in body["entries"]] == [(60.0, -20.0), (80.0, None)]


def test_an_empty_history_says_so_and_exits_0(tmp_path: Path) -> None:
    code, stdout, _ = history("--db", str(tmp_path / "none.db"))
    assert code == 0 and "no history yet" in stdout and "none.db does not exist" in stdout
    assert not (tmp_path / "none.db").exists(), "reading creates nothing"
    db = tmp_path / "loadkit.db"
    save_result("run", gameday("x", 1, 0), db, plan="smoke")
    code, stdout, _ = history("--db", str(db), "--kind", "gameday")
    assert code == 0 and stdout.strip() == f"no results in {db} (kind gameday)."
    code, stdout, _ = history("--db", str(db), "--kind", "gameday", "-o", "json")
    assert code == 0 and json.loads(stdout)["entries"] == []


@pytest.mark.parametrize(("args", "field"), [
    (["--since", "3x"], "--since"),
    (["--since", "30"], "--since"),
    (["--since", "-5d"], "--since"),
    (["--canary", "bruno-site"], "--canary"),
    (["--kind", "compare"], "--kind"),
    (["--limit", "0"], "--limit"),
], ids=["unit", "no-unit", "negative", "canary-without-namespace", "kind", "limit"])
def test_bad_history_options_exit_2_with_the_field_and_the_fix(args: list[str], field: str) -> None:
    code, _, stderr = history(*args)
    assert code == 2 and field in stderr
    if field == "--since":
        assert "30d, 12h or 90m, or a date such as 2026-11-01" in stderr


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", NOW - timedelta(days=30)),
    ("12h", NOW - timedelta(hours=12)),
    ("90m", NOW - timedelta(minutes=90)),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T10:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
    ("2026-11-01T10:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
], ids=["days", "hours", "minutes", "compound", "date", "zulu", "offset"])
def test_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


# -- run keeps its result ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with serve_http("127.0.0.1", lambda _path: (200, {}, b"ok")) as server:
        yield f"http://127.0.0.1:{server.port}"


def quick_run(target: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    out = run_loadkit("run", "--target", target, "-u", "2", "-r", "100", "-t", "2s", "--min-samples", "5",
                      "-o", "json", "-q", *args, env=env, timeout=60)
    return out.returncode, json.loads(out.stdout), out.stderr


def test_run_keeps_its_result_in_the_history(target: str, tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    code, result, _ = quick_run(target, "--db", str(db), "--canary", "bruno-site", "--namespace", "bruno")
    assert code == 0 and result["verdict"] == "pass"
    [row] = entries(db)
    assert (row["kind"], row["name"], row["target"], row["verdict"]) == ("run", "smoke", target, "pass")
    assert (row["namespace"], row["canary"], row["score"]) == ("bruno", "bruno-site", result["score"])


def test_a_store_that_cannot_be_written_is_a_warning_not_a_verdict(target: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, result, stderr = quick_run(target, "--db", str(blocker / "loadkit.db"))
    assert (code, result["verdict"]) == (0, "pass")
    assert "warning: the result was not saved in the history" in stderr and "--no-history" in stderr


def test_no_history_writes_nothing_even_with_loadkit_db_set(target: str, tmp_path: Path) -> None:
    db = tmp_path / "loadkit.db"
    code, _, stderr = quick_run(target, "--no-history", env={"LOADKIT_DB": str(db)})
    assert code == 0 and not db.exists() and "warning" not in stderr


def test_keep_warns_for_any_store_failure_and_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new.db"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    Keep(db).save("chaos", build_chaos_result(scenario(12)))
    assert "written by a newer loadkit" in capsys.readouterr().err
    Keep(db, enabled=False).save("chaos", build_chaos_result(scenario(12)))
    assert capsys.readouterr().err == ""
