"""The rlm_python3 entry points: garbage in never raises and never accepts; valid input gets its VLAN."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from policy.model import DeviceKey, LifecycleState, Outcome
from radius_hooks.hook import Hook
from tests.pki_fixtures import NOW, DevicePki
from tests.radius_pairs import freeradius_pairs
from tests.support.hook_env import FAIL, NOOP, OK, REJECT, UPDATED, FakeRadiusd, valid_request


def test_unknown_idevid_gets_quarantine_and_is_recorded(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, _ = hook
    rcode, lists = instance.check_eap_tls(valid_request(pki))  # type: ignore[misc]
    assert rcode == UPDATED
    assert ("Tunnel-Private-Group-Id", ":=", "999") in lists["reply"]
    assert ("Tunnel-Type", ":=", "VLAN") in lists["reply"]
    assert ("Tunnel-Medium-Type", ":=", "IEEE-802") in lists["reply"]
    store = instance.authorizer.store  # type: ignore[union-attr]
    (device,) = store.list_devices()
    assert device.state is LifecycleState.PENDING
    instance.settle()
    assert store.decisions(device.id)[0].outcome is Outcome.QUARANTINE


def test_operational_ldevid_gets_its_vlan(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, _ = hook
    store = instance.authorizer.store  # type: ignore[union-attr]
    issuer = "/C=DE/O=Example Site/CN=Site LDevID CA"
    store.add_device(DeviceKey(issuer, "SN-0002"), state=LifecycleState.OPERATIONAL, now=NOW)
    rcode, lists = instance.check_eap_tls(valid_request(pki, "ldevid-ok", "ldevid"))  # type: ignore[misc]
    assert rcode == UPDATED and ("Tunnel-Private-Group-Id", ":=", "30") in lists["reply"]


def test_revoked_is_rejected(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, radiusd = hook
    assert instance.check_eap_tls(valid_request(pki, "ldevid-revoked", "ldevid")) == REJECT
    assert any("revoked" in line for _, line in radiusd.lines)


def _garbage(pki: DevicePki) -> list[object]:
    base = list(freeradius_pairs(pki.devices["idevid-ok"].cert, pki.cas["idevid"].cert))
    truncated = [(n, v[: len(v) // 2]) if n.startswith("TLS-Client-Cert-Subject") else (n, v) for n, v in base]
    oversize = [(n, v + "A" * 1100) if n.startswith("TLS-Client-Cert-") else (n, v) for n, v in base]
    rng = random.Random(1234)
    fuzzed = [(n, "".join(chr(rng.randrange(0, 0x2FF)) for _ in range(rng.randrange(0, 40)))) for n, _ in base]
    return [
        None, 0, "", "garbage", b"\x00\xff", {}, (), [], {"request": None}, {"request": ()}, {"request": "abc"},
        {"request": ((),)}, {"request": (("TLS-Client-Cert-Subject",),)}, {"request": ((1, 2, 3),)},
        {"request": tuple(truncated)}, {"request": tuple(oversize)}, {"request": tuple(fuzzed)},
        {"request": tuple((n, None) for n, _ in base)}, {"request": tuple(base[:5])},
        {"request": (("TLS-Client-Cert-Subject", "/CN=x"),) * 5000},
        {"request": tuple((n, v.encode()) for n, v in base) + (("TLS-Client-Cert-Serial", "nothex"),)},
        {"request": tuple(base) + (("TLS-Client-Cert-Issuer", "/CN=Rogue"),)},  # conflicting repeat
    ]


def test_garbage_never_raises_and_never_accepts(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, _ = hook
    for index, request in enumerate(_garbage(pki)):
        assert instance.check_eap_tls(request) == REJECT, f"garbage #{index} was not rejected"
        assert instance.post_auth(request) == NOOP
        assert instance.authorize(request) == NOOP


def test_truncated_and_oversize_requests_are_logged_with_reason(hook: tuple[Hook, FakeRadiusd],
                                                                pki: DevicePki) -> None:
    instance, _ = hook
    oversize = _garbage(pki)[15]
    assert instance.check_eap_tls(oversize) == REJECT
    instance.settle()
    entry = instance.authorizer.store.decisions(None, limit=1)[0]  # type: ignore[union-attr]
    assert entry.outcome is Outcome.REJECT and "cut by FreeRADIUS" in entry.reasons[0]


def test_uninitialised_hook_fails_closed(pki: DevicePki) -> None:
    radiusd = FakeRadiusd()
    instance = Hook(radiusd)
    assert instance.instantiate({"settings": "/nonexistent/hook.json"}) == -1
    assert instance.check_eap_tls(valid_request(pki)) == REJECT
    assert any("cannot start" in line for _, line in radiusd.lines)


def test_store_failure_fails_closed(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, radiusd = hook

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("database is on fire")

    instance.authorizer.store.find_device = broken  # type: ignore[union-attr, method-assign, assignment]
    assert instance.check_eap_tls(valid_request(pki)) == REJECT
    assert any("failing closed" in line and "on fire" in line for _, line in radiusd.lines)


def test_post_auth_reject_logs_unverified_and_never_authorizes(hook: tuple[Hook, FakeRadiusd],
                                                              pki: DevicePki) -> None:
    instance, _ = hook
    request = {"request": freeradius_pairs(pki.devices["rogue"].cert, pki.cas["rogue"].cert)
               + (("Module-Failure-Message", "eap_tls: (TLS) Alert write:fatal:unknown CA"),),
               "config": (("Post-Auth-Type", "Reject"),), "reply": (("EAP-Message", "0x04050004"),)}
    assert instance.post_auth(request) == NOOP
    instance.settle()
    entry = instance.authorizer.store.decisions(None, limit=1)[0]  # type: ignore[union-attr]
    assert entry.outcome is Outcome.REJECT
    assert "unknown CA" in entry.reasons[0] and "unverified" in entry.reasons[1]
    assert instance.authorizer.store.list_devices() == []  # type: ignore[union-attr]


def test_post_auth_does_not_double_log_our_own_reject(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, _ = hook
    request = valid_request(pki, "ldevid-revoked", "ldevid")
    assert instance.check_eap_tls(request) == REJECT
    reject_round = {**request, "config": (("Post-Auth-Type", "Reject"),)}
    assert instance.post_auth(reject_round) == NOOP
    instance.settle()
    assert len(instance.authorizer.store.decisions(None)) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("failure", ["store", "internal", "request"])
def test_our_own_reject_is_never_logged_again_as_a_tls_failure(hook: tuple[Hook, FakeRadiusd], pki: DevicePki,
                                                               monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    from policy.errors import StoreError

    instance, radiusd = hook
    request = valid_request(pki, "ldevid-ok", "ldevid")
    authorizer = instance.authorizer
    assert authorizer is not None
    if failure == "request":  # an ambiguous subject: refused while parsing the request
        pairs = tuple((n, "/CN=x\\/serialNumber=SN-0002") if n == "TLS-Client-Cert-Subject" else (n, v)
                      for n, v in request["request"])
        request = {**request, "request": pairs}
    else:
        error = StoreError("registry is damaged") if failure == "store" else RuntimeError("boom")

        def fail(*_a: object, **_k: object) -> None:
            raise error

        monkeypatch.setattr(authorizer, "authorize", fail)
    assert instance.check_eap_tls(request) == REJECT
    instance.settle()
    before = len(authorizer.store.decisions(None))
    assert instance.post_auth({**request, "config": (("Post-Auth-Type", "Reject"),)}) == NOOP
    instance.settle()
    assert len(authorizer.store.decisions(None)) == before
    assert not any("before policy" in line for _, line in radiusd.lines), radiusd.lines


def test_detach(hook: tuple[Hook, FakeRadiusd]) -> None:
    instance, _ = hook
    assert instance.detach(None) == OK


def test_clock_is_utc() -> None:
    assert Hook(FakeRadiusd()).clock().tzinfo is UTC
    assert isinstance(Hook(FakeRadiusd()).clock(), datetime)


def test_reply_carries_filter_id_when_the_policy_names_one() -> None:
    from policy.model import Decision
    from radius_hooks.hook import vlan_reply

    pairs = vlan_reply(Decision(Outcome.ACCEPT, 40, "cameras", ("r",), filter_id="CAMERA-ACL"))
    assert ("Filter-Id", ":=", "CAMERA-ACL") in pairs
    assert vlan_reply(Decision(Outcome.REJECT, None, None, ("r",))) == ()


def test_accounting_garbage_never_raises_and_reports(hook: tuple[Hook, FakeRadiusd], pki: DevicePki) -> None:
    instance, radiusd = hook
    for request in _garbage(pki) + [{"request": (("Acct-Status-Type", "Teleport"),)},
                                    {"request": (("Acct-Status-Type", "Start"), ("Calling-Station-Id", "x" * 5000))}]:
        assert instance.accounting(request) in (OK, FAIL)
    start = {"request": (("Acct-Status-Type", "Start"), ("Acct-Session-Id", "A" * 400), ("NAS-IP-Address", "10.0.0.1"),
                         ("Calling-Station-Id", "aa:bb:cc:dd:ee:ff"), ("NAS-Port", "7"))}
    assert instance.accounting(start) == OK
    sessions = instance.authorizer.sessions.all_active()  # type: ignore[union-attr]
    (session,) = [s for s in sessions if s.calling_station_id == "AA-BB-CC-DD-EE-FF"]
    assert len(session.acct_session_id or "") == 253  # cut, not refused
    assert all(len(s.calling_station_id) <= 64 for s in sessions)  # the oversize MAC was cut too
    assert any("ignoring Acct-Status-Type 'Teleport'" in line for _, line in radiusd.lines)


def test_accounting_store_failure_asks_the_nas_to_retransmit(hook: tuple[Hook, FakeRadiusd]) -> None:
    instance, _ = hook

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    instance.authorizer.sessions.accounting = broken  # type: ignore[union-attr, method-assign, assignment]
    assert instance.accounting({"request": (("Acct-Status-Type", "Stop"),)}) == FAIL


def test_python_logging_inside_radiusd_reaches_radlog_escaped(hook: tuple[Hook, FakeRadiusd]) -> None:
    import logging

    _instance, radiusd = hook
    logging.getLogger("trustport.services.mud_lookup").warning("MUD lookup for %s failed", "https://x/\x1b[2J\nfake")
    level, line = radiusd.lines[-1]
    assert level == radiusd.L_WARN and "MUD lookup for https://x/" in line
    assert "\x1b" not in line and "\n" not in line


# -- one policy at run time: the hook follows the YAML, without a re-render ------------------------------------

class _Monotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def _reload_env(tmp_path: Any) -> Any:
    from tests.support.placement_env import PlacementEnv

    policy = {"segments": {"production": 30, "quarantine": 999},
              "policy": {"quarantine_segment": "quarantine", "default_segment": "production"}}
    env = PlacementEnv(tmp_path, datetime.now(UTC).replace(microsecond=0), policy)
    env.hook.monotonic = _Monotonic()
    env.device("meter", "campus-ldevid")
    env.register("meter", LifecycleState.OPERATIONAL)
    return env


def _edit(env: Any, production: Any) -> None:
    import yaml

    data = yaml.safe_load(env.config_path.read_text())
    data["segments"]["production"] = production
    env.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_hook_picks_up_an_edited_policy_without_re_render(tmp_path: Any) -> None:
    from trustport.settings.config import load_config

    env = _reload_env(tmp_path)
    try:
        old = env.hook.authorizer.policy_revision
        assert env.via_hook("meter", "10.10.1.2").vlan == 30
        _edit(env, 31)
        assert env.via_hook("meter", "10.10.1.2").vlan == 30  # checked at most once per second
        env.hook.monotonic.value += 1.5
        assert env.via_hook("meter", "10.10.1.2").vlan == 31
        new = load_config(env.config_path).policy_revision()
        assert new != old and env.hook.authorizer.policy_revision == new
        assert env.store.decisions(limit=1)[0].policy_revision == new
        (server,) = env.store.radius_servers()
        assert server.policy_revision == new and server.config_file == str(env.config_path)
        assert any(f"revision {old} -> {new}" in line for _, line in env.radiusd.lines)
    finally:
        env.close()


def test_a_broken_edit_keeps_the_validated_policy_and_says_so_once(tmp_path: Any) -> None:
    env = _reload_env(tmp_path)
    try:
        old = env.hook.authorizer.policy_revision
        _edit(env, 5000)  # not a VLAN: fails validation
        for _ in range(3):
            env.hook.monotonic.value += 1.5
            assert env.via_hook("meter", "10.10.1.2").vlan == 30
        errors = [line for level, line in env.radiusd.lines if level == env.radiusd.L_ERR]
        assert len(errors) == 1 and f"keeping policy revision {old}" in errors[0]
        assert env.store.decisions(limit=1)[0].policy_revision == old
        _edit(env, 32)  # fixed: picked up
        env.hook.monotonic.value += 1.5
        assert env.via_hook("meter", "10.10.1.2").vlan == 32
    finally:
        env.close()


def test_radius_status_compares_running_servers_with_the_yaml(tmp_path: Any) -> None:
    import json

    from click.testing import CliRunner

    from trustport.cli.main import cli

    env = _reload_env(tmp_path)
    try:
        status = CliRunner().invoke(cli, ["radius", "status", "--json", "--config", str(env.config_path)])
        assert status.exit_code == 0, status.output
        shown = json.loads(status.output)
        assert [s["state"] for s in shown["servers"]] == ["current"]
        assert shown["servers"][0]["policy_revision"] == shown["policy_revision"]
        _edit(env, 33)  # the hook has not authenticated anyone since: it still holds the old revision
        stale = CliRunner().invoke(cli, ["radius", "status", "--config", str(env.config_path)])
        assert stale.exit_code == 1 and "stale" in stale.output
        env.hook.monotonic.value += 1.5
        env.via_hook("meter", "10.10.1.2")
        assert CliRunner().invoke(cli, ["radius", "status", "--config", str(env.config_path)]).exit_code == 0
    finally:
        env.close()


def test_hook_json_without_a_config_file_keeps_the_rendered_policy_and_warns(hook: tuple[Hook, FakeRadiusd]) -> None:
    instance, radiusd = hook
    assert any("does not name the trustport config file" in line for _, line in radiusd.lines)
    instance.check_policy()  # nothing to watch: no error
