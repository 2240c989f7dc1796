"""Secrets and access: nothing a run leaves behind holds a secret; TLS can't be switched off.

The sandboxes check credentials against `seed.SANDBOX_CREDENTIALS` at request time, and
`sandbox_env` reads the same dict, so replacing its secret entries for one test (before the
sandboxes start) gives a Procore client secret, X3 password and X3 JWT secret that are
unique, recognisable strings accepted end to end. The test then searches everything the
runs leave: the Dagster event log and run storage (every file under the instance
directory, and every event and run record serialised), run config and tags,
materialisation and check metadata, the ledger database files, stdout/stderr and Python
log records of the runs, the error texts of failing runs (wrong secrets, whose values are
searched for too), the Procore sandbox's call log, and the output of `mlc-dagster audit`
and `mlc-dagster ping` (working and failing).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import subprocess
import sys
import uuid
from urllib.parse import quote

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from mlc_dagster.resources.tls import InsecureURLError, check_url
from mlc_dagster_tests.reliability.harness import (
    SYNC_JOB,
    job_names,
    open_world,
    report,
    run_errors,
    run_job,
)
from mlc_sandbox import seed as seed_module
from mlc_sandbox.server import ensure_loopback, running_sandboxes

CLI = [sys.executable, "-m", "mlc_dagster.cli"]


def _needles(values: dict[str, str], user: str) -> dict[str, bytes]:
    """Each secret as it could leak: raw, URL-quoted, and inside a Basic auth header."""
    out = {}
    for name, value in values.items():
        out[name] = value.encode()
        out[f"{name} (url-quoted)"] = quote(value, safe="").encode()
        out[f"{name} (basic auth)"] = base64.b64encode(f"{user}:{value}".encode())
    return out


def _hits(needles: dict[str, bytes], artefacts: dict[str, bytes]) -> list[str]:
    return [f"{needle} in {where}" for where, data in artefacts.items()
            for needle, value in needles.items() if value in data]


def _cli(args: list[str], env: dict) -> bytes:
    done = subprocess.run(CLI + args, env=env, capture_output=True, timeout=120)
    return done.stdout + b"\n" + done.stderr


@pytest.mark.slow
def test_no_secret_in_anything_a_run_leaves(monkeypatch, tmp_path, capfd, caplog):
    tag = uuid.uuid4().hex[:12]
    secrets = {"procore_client_secret": f"pcs-{tag}-Zq7", "x3_password": f"x3pw-{tag}-Kd2",
               "x3_jwt_secret": f"x3jwt-{tag}-Wm9"}
    wrong = {"wrong procore secret": f"wrong-pcs-{tag}", "wrong x3 password": f"wrong-x3pw-{tag}",
             "wrong jwt secret": f"wrong-x3jwt-{tag}"}
    for key, value in secrets.items():
        monkeypatch.setitem(seed_module.SANDBOX_CREDENTIALS, key, value)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="mlc_dagster")  # ours in full; libraries from INFO

    home = tmp_path / "dagster_home"
    home.mkdir()
    with open_world(monkeypatch, tmp_path) as w, dg.instance_for_test(temp_dir=str(home)) as inst:
        assert w.env["PROCORE_CLIENT_SECRET"] == secrets["procore_client_secret"]
        results = {"sync (rest)": run_job(SYNC_JOB, instance=inst)}
        results["sync (graphql)"] = run_job(SYNC_JOB, instance=inst,
                                            resources={"sage_x3": {"api": "graphql"}})
        # the other jobs (replay, reconcile, ... whatever exists) on an in-memory instance:
        # their events and run records are searched the same way, faster
        other = dg.DagsterInstance.ephemeral()
        for job in sorted(job_names() - {SYNC_JOB}):
            results[job] = run_job(job, instance=other)
        for name, result in results.items():
            assert result.success, (name, run_errors(result))

        # wrong secrets, one per run, each on a fresh instance (reference assets reuse a
        # recent read, which would spare Procore the wrong secret)
        failing, failing_instances = {}, {}
        for name, env_name, value, resources, refusal in (
                ("procore", "PROCORE_CLIENT_SECRET", wrong["wrong procore secret"], None,
                 "Procore rejected the client id/secret"),
                ("x3 rest", "SAGE_X3_PASSWORD", wrong["wrong x3 password"], None,
                 "Sage X3 rejected the user/password"),
                ("x3 graphql", "SAGE_X3_JWT_SECRET", wrong["wrong jwt secret"],
                 {"sage_x3": {"api": "graphql"}}, "Sage X3 rejected the token")):
            failing_instances[name] = dg.DagsterInstance.ephemeral()
            with monkeypatch.context() as mp:
                mp.setenv(env_name, value)
                failing[name] = run_job(SYNC_JOB, instance=failing_instances[name],
                                        resources=resources)
            errors = "\n".join(run_errors(failing[name]))
            assert not failing[name].success, f"a wrong {env_name} was accepted"
            assert refusal in errors, errors[-2000:]  # says who refused what, not the value

        artefacts: dict[str, bytes] = {}
        for name, result in {**results, **{f"failing {k}": v for k, v in failing.items()}}.items():
            instance = next(i for i in (inst, other, *failing_instances.values())
                            if i.has_run(result.run_id))
            run = instance.get_run_by_id(result.run_id)
            artefacts[f"{name}: run record (config, tags)"] = serialize_value(run).encode()
            artefacts[f"{name}: run config"] = json.dumps(run.run_config).encode()
            for i, entry in enumerate(instance.all_logs(result.run_id)):
                artefacts[f"{name}: event {i} {entry.dagster_event_type}"] = (
                    serialize_value(entry).encode() + (entry.user_message or "").encode())
            artefacts[f"{name}: error texts"] = "\n".join(run_errors(result)).encode()
        for path in sorted(home.rglob("*")):
            if path.is_file():
                artefacts[f"instance file {path.relative_to(home)}"] = path.read_bytes()
        for path in sorted(tmp_path.glob("ledger.sqlite*")):
            artefacts[f"ledger file {path.name}"] = path.read_bytes()
        artefacts["procore sandbox call log"] = json.dumps(w.calls("procore")).encode()
        artefacts["x3 sandbox call log"] = json.dumps(w.calls("sage_x3")).encode()

        env = dict(os.environ)
        po = next(k for k, s in w.end_state().ledger["purchase_order"].items()
                  if s.status == "synced")
        artefacts["mlc-dagster audit"] = _cli(["audit", "po", po], env)
        artefacts["mlc-dagster audit --json"] = _cli(["audit", "po", po, "--json"], env)
        assert po.encode() in artefacts["mlc-dagster audit --json"]
        artefacts["mlc-dagster ping"] = _cli(["ping"], env)
        assert b"0 failed" in artefacts["mlc-dagster ping"], artefacts["mlc-dagster ping"]
        artefacts["mlc-dagster ping (graphql)"] = _cli(["ping"], {**env, "SAGE_X3_API": "graphql"})
        bad_env = {**env, "PROCORE_CLIENT_SECRET": wrong["wrong procore secret"],
                   "SAGE_X3_PASSWORD": wrong["wrong x3 password"]}
        artefacts["mlc-dagster ping (wrong secrets)"] = _cli(["ping"], bad_env)
        assert b"FAIL" in artefacts["mlc-dagster ping (wrong secrets)"]

        tokens = {f"procore access token {i}": t
                  for i, t in enumerate(w.procore.state.tokens)}
        inst_run_config = inst.get_run_by_id(results["sync (rest)"].run_id).run_config

    captured = capfd.readouterr()
    artefacts["stdout/stderr of the runs"] = (captured.out + captured.err).encode()
    artefacts["python log records"] = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records).encode()

    needles = _needles({**secrets, **wrong, **tokens}, seed_module.SANDBOX_CREDENTIALS["x3_user"])
    found = _hits(needles, artefacts)
    assert not found, found[:20]
    # the search itself works: it finds each form of a secret where there is one, the
    # secrets were the runs' real inputs, and there was plenty to search
    control = (f"x {secrets['x3_password']} " + base64.b64encode(
        f"MLCAPI:{secrets['x3_password']}".encode()).decode()).encode()
    assert len(_hits(needles, {"control": control})) == 3  # raw, url-quoted (same), basic auth
    assert os.environ["PROCORE_CLIENT_SECRET"] == secrets["procore_client_secret"]
    assert "PROCORE_CLIENT_SECRET" in json.dumps(inst_run_config)  # a reference, not a value
    assert sum(map(len, artefacts.values())) > 100_000
    report("checks", test="secret hygiene",
           detail=f"{len(needles)} secret forms x {len(artefacts)} artefacts "
                  f"({sum(map(len, artefacts.values())) // 1024} KiB): none found")


# --- TLS and loopback ------------------------------------------------------------------------

@pytest.mark.parametrize("url, allow", [
    ("http://api.procore.com", True),  # plain http to a real host: never, whatever the flag
    ("http://10.0.0.8:8124", True),
    ("http://localhost.example.com", True),
    ("http://127.0.0.1.nip.io", True),
    ("ftp://127.0.0.1", True),
    ("api.procore.com", True),
    ("http://127.0.0.1:8710", False),  # loopback without MLC_ALLOW_INSECURE_LOOPBACK
    ("http://[::1]:8710", False),
])
def test_plain_http_is_refused(url, allow):
    with pytest.raises(InsecureURLError):
        check_url(url, allow_insecure_loopback=allow, setting="PROCORE_API_URL")


@pytest.mark.parametrize("url, allow", [("https://api.procore.com", False),
                                        ("http://127.0.0.1:8710", True),
                                        ("http://localhost:8710", True),
                                        ("http://[::1]:8710", True)])
def test_https_and_opted_in_loopback_are_accepted(url, allow):
    assert check_url(url, allow_insecure_loopback=allow, setting="PROCORE_API_URL") == url


@pytest.mark.parametrize("env_name, value, flag", [
    ("PROCORE_API_URL", "http://10.0.0.8:9", "1"),
    ("SAGE_X3_URL", "http://x3.example.com:8124", "1"),
    ("PROCORE_LOGIN_URL", None, ""),  # the sandbox's own loopback URL, without the opt-in
])
def test_the_job_refuses_insecure_urls_before_any_call(monkeypatch, tmp_path, env_name, value,
                                                         flag):
    with open_world(monkeypatch, tmp_path) as w:
        if value:
            monkeypatch.setenv(env_name, value)
        monkeypatch.setenv("MLC_ALLOW_INSECURE_LOOPBACK", flag)
        result = w.run()
        assert not result.success
        errors = "\n".join(run_errors(result))
        assert "InsecureURLError" in errors and env_name in errors, errors[-1500:]
        assert w.procore_writes() == []
        if env_name.startswith("PROCORE"):
            assert w.calls("procore") == [], "a call went out before the URL was checked"


def test_tls_verification_cannot_be_turned_off(monkeypatch):
    """Every knob that might plausibly disable verification leaves it on."""
    from mlc_dagster.resources.procore import ProcoreResource
    from mlc_dagster.resources.sage_x3 import SageX3Resource

    for name in ("PYTHONHTTPSVERIFY", "MLC_TLS_VERIFY", "MLC_VERIFY_TLS", "SSL_VERIFY",
                 "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPX_VERIFY"):
        monkeypatch.setenv(name, "0" if "VERIFY" in name else "")
    fields = set(ProcoreResource.model_fields) | set(SageX3Resource.model_fields)
    assert not {f for f in fields if any(w in f for w in ("verify", "ssl", "tls", "cert"))}
    procore = ProcoreResource(login_url="https://login.procore.com",
                              api_url="https://api.procore.com", client_id="c",
                              client_secret="s", company_id="1", allow_insecure_loopback=True)
    x3 = SageX3Resource(url="https://x3.example.com", user="u", password="p",
                        allow_insecure_loopback=True)
    for resource in (procore, x3):
        client = resource.get_client()
        try:
            context = client._http._transport._pool._ssl_context
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        finally:
            client.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "8.8.8.8", "192.168.1.10"])
def test_non_loopback_hosts_are_refused(host):
    with pytest.raises(ValueError, match="loopback"):
        ensure_loopback(host)


def test_sandboxes_refuse_to_start_on_all_interfaces():
    with pytest.raises(ValueError, match="loopback"), running_sandboxes(host="0.0.0.0"):
        pytest.fail("a sandbox started on 0.0.0.0")


@pytest.mark.parametrize("host", ["8.8.8.8", "192.168.1.10", "::"])
def test_sandboxes_refuse_any_other_host_before_touching_the_network(host):
    with pytest.raises(ValueError, match="loopback"), running_sandboxes(host=host):
        pytest.fail("a sandbox started on a non-loopback address")


def test_sandbox_command_refuses_a_public_host():
    done = subprocess.run(CLI + ["sandbox", "--host", "0.0.0.0"], capture_output=True,
                          timeout=60, env={**os.environ})
    assert done.returncode != 0
    assert b"loopback" in done.stderr, done.stderr[-500:]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_are_accepted(host):
    assert ensure_loopback(host) == host


def test_secret_wrapper_never_shows_its_value():
    from mlc_dagster.resources.http_core import Secret, redact

    secret = Secret("s3cr3t-value")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", json.dumps(str(secret))):
        assert "s3cr3t-value" not in text
    assert redact("token s3cr3t-value leaked", [secret]) == "token [REDACTED] leaked"

