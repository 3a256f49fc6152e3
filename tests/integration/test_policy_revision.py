"""One policy revision at run time, with a real FreeRADIUS: an edit of the YAML reaches the running hook without a
re-render (within a second), the decision log says which revision decided, ``trustport radius status`` shows the
revision radiusd holds, and a broken edit keeps the validated policy working and says so in radiusd.log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from policy.model import DeviceKey
from policy.x509facts import facts_from_certificate
from trustport.cli.main import cli
from trustport.settings.config import load_config
from trustport_lab.lab import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("revision-lab")
    with Lab(work, datetime.now(UTC), echo=lambda _m: None) as running:
        yield running


def _set_production_vlan(lab: Lab, vlan: object) -> None:
    data = yaml.safe_load(lab.config_path.read_text(encoding="utf-8"))
    data["segments"]["production"] = vlan
    lab.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    time.sleep(1.2)  # the hook looks at the file at most once per second


def _yaml_revision(lab: Lab) -> str:
    return load_config(lab.config_path).policy_revision()


def _last_revision(lab: Lab, serial: str) -> str | None:
    facts = facts_from_certificate(lab.certificate(serial))
    device = lab.store.find_device(DeviceKey(facts.issuer, serial))
    assert device is not None
    return lab.store.decisions(device.id, limit=1)[0].policy_revision


def _status(lab: Lab) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["radius", "status", "--json", "--config", str(lab.config_path)])
    return result.exit_code, json.loads(result.output) if result.output.startswith("{") else {}


def test_an_edited_policy_reaches_running_freeradius_without_re_render(lab: Lab) -> None:
    first = _yaml_revision(lab)
    assert lab.authenticate("SN-1001").vlan == 30
    assert _last_revision(lab, "SN-1001") == first
    code, status = _status(lab)
    assert code == 0 and [s["policy_revision"] for s in status["servers"]] == [first]

    _set_production_vlan(lab, 31)  # no 'trustport radius render', no HUP
    second = _yaml_revision(lab)
    assert second != first
    result = lab.authenticate("SN-1001")
    assert result.code == "Access-Accept" and result.vlan == 31, result.output[-2000:]
    assert _last_revision(lab, "SN-1001") == second
    code, status = _status(lab)
    assert code == 0, status
    assert status["policy_revision"] == second
    assert [(s["policy_revision"], s["state"]) for s in status["servers"]] == [(second, "current")]
    log = (lab.work / "radiusd.log").read_text(errors="replace")
    assert f"revision {first} -> {second}" in log


def test_a_broken_edit_keeps_the_validated_policy_and_says_so(lab: Lab) -> None:
    before = _last_revision(lab, "SN-1001")
    vlan = lab.authenticate("SN-1001").vlan
    _set_production_vlan(lab, "not-a-vlan")
    result = lab.authenticate("SN-1001")
    assert result.code == "Access-Accept" and result.vlan == vlan, result.output[-2000:]
    assert _last_revision(lab, "SN-1001") == before
    log = (lab.work / "radiusd.log").read_text(errors="replace")
    assert f"failed; keeping policy revision {before}" in log
    _set_production_vlan(lab, 30)  # repaired: picked up again
    assert lab.authenticate("SN-1001").vlan == 30
