"""/metrics after real authentications: FreeRADIUS 3.2 + rlm_python3 + eapol_test through the hook, whose
counters reach ``exposition(App(config))`` through its snapshot file; the counters move by exactly the
authentications made."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trustport.app import App
from trustport.observability.metrics import exposition
from trustport_lab.lab import Lab, vlan_outcome

FLUSH = 0.2


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("metrics-lab")
    with Lab(work, datetime.now(UTC), echo=lambda _m: None,
             extra_config={"metrics": {"directory": "metrics", "flush_seconds": FLUSH}}) as running:
        yield running


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(lab: Lab) -> Samples:
    with App(lab.config) as app:
        body, content_type = exposition(app)
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def delta(after: Samples, before: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    keys = {k for k in (*after, *before) if k[0] == name}
    moved = {k[1]: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {labels: value for labels, value in moved.items() if value}


def test_counters_move_by_the_authentications_made(lab: Lab) -> None:
    # the hook of the running radiusd left its first snapshot when it started (and the -XC check's, long gone)
    metrics_dir = Path(lab.config.path(lab.config.metrics.directory))
    assert list(metrics_dir.glob("hook-*.json"))
    before = scrape(lab)
    assert before[("trustport_registry_up", ())] == 1
    made = {serial: vlan_outcome(lab.authenticate(serial))
            for serial in ("SN-1001", "SN-2002", "SN-3003", "SN-4004", "SN-5005")}
    assert made == {"SN-1001": "accept VLAN 30", "SN-2002": "quarantine VLAN 999", "SN-3003": "quarantine VLAN 999",
                    "SN-4004": "reject", "SN-5005": "reject"}
    time.sleep(FLUSH * 2)  # the next hook call writes a snapshot (including itself)
    assert vlan_outcome(lab.authenticate("SN-1001")) == "accept VLAN 30"
    after = scrape(lab)

    assert delta(after, before, "trustport_authentications_total") == {
        (("outcome", "accept"), ("segment", "production")): 2,
        (("outcome", "quarantine"), ("segment", "quarantine")): 2,
        (("outcome", "reject"), ("segment", "none")): 2,  # revoked (the hook's reject) + untrusted CA (TLS)
    }
    # the registry's decision log, the second source, agrees
    assert delta(after, before, "trustport_decision_log_entries_total") == {
        (("outcome", "accept"),): 2, (("outcome", "quarantine"),): 2, (("outcome", "reject"),): 2}
    # check_eap_tls ran for the five that reached policy; post_auth for all six, but the last one's post_auth ran
    # after its check_eap_tls wrote the snapshot: it is in the next one (a snapshot is written on a hook call)
    assert delta(after, before, "trustport_hook_seconds_count") == {(("call", "check_eap_tls"),): 5,
                                                                    (("call", "post_auth"),): 5}
    assert delta(after, before, "trustport_hook_seconds_bucket")[(("call", "check_eap_tls"), ("le", "+Inf"))] == 5
    assert delta(after, before, "trustport_registry_errors_total") == {}
    assert delta(after, before, "trustport_hook_failed_closed_total") == {}
    # the CRLs the lab publishes, by issuer
    issuers = {dict(labels)["issuer"] for name, labels in after if name == "trustport_crl_age_seconds"}
    assert issuers == {"/C=DE/O=Example Site/CN=trustport LDevID CA", "/C=DE/O=Example Site/CN=trustport owner CA"}
    assert after[("trustport_crl_refused_files", ())] == 0
