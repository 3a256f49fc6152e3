"""``trustport lab``: the whole story so far on one machine, with real FreeRADIUS and real eapol_test clients.

Builds a throw-away PKI, config and registry, renders and starts FreeRADIUS on a free loopback port, runs one
802.1X EAP-TLS client per scenario, prints what each got and why, tells the continuous-authorization story
(``trustport_lab.enforce``), the onboarding story (``trustport_lab.onboard``: EST with curl and openssl, the owner
CA, re-authentication, revocation) and the directory story (``trustport_lab.directory_story``: a real slapd over
LDAPS, a directory-approved device, disabled, an outage, removed), and stops everything it started.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policy.errors import StoreError
from policy.model import DeviceKey, LifecycleState
from policy.text import safe_text
from policy.x509facts import facts_from_certificate, oneline_dn
from trustport.cli.base import table
from trustport.files import write_private
from trustport.freeradius.render import render
from trustport.freeradius.run import EapolResult, RadiusServer, free_port, run_eapol, write_eapol_conf
from trustport.settings.config import load_config
from trustport.store import changes
from trustport.store.journal import journal_status, wait_for_journal
from trustport.store.sql import SqlDeviceStore
from trustport_lab.attest import post_attestations
from trustport_lab.directory_story import (
    DirectoryStory,
    directory_section,
    format_directory,
    format_sync_time,
    lab_slapd,
    run_directory,
    unavailable,
)
from trustport_lab.enforce import LabNetwork, StoryRow, apply_radius_vlan, format_story, lab_network, run_story
from trustport_lab.fake_verifier import new_signing_key, write_public_jwk
from trustport_lab.forged import forge
from trustport_lab.onboard import OnboardStory, format_onboarding, missing_tools, run_onboarding
from trustport_lab.pki import NO_EXPIRY, Issued, crl_pem, issue_device, issue_server, make_ca, make_crl

SEGMENTS = {"production": 30, "cameras": 40, "restricted": 35, "onboarding": 90, "quarantine": 999}
SERVER_NAME = "radius.lab.example"  # the RADIUS (and EST) server certificate's name


@dataclass(frozen=True)
class Scenario:
    name: str
    serial: str
    issuer: str  # "idevid", "ldevid" or "rogue"
    registry_state: LifecycleState | None
    segment: str | None
    revoked: bool
    expected: str  # what the lab promises, checked against what happened
    mud_url: str | None = None
    attestation: str | None = None  # EAR status the lab's verifier signs, or "foreign" (another device's key)
    forge: str | None = None  # a forged certificate (trustport_lab.forged) instead of a genuine one
    claims: str | None = None  # the registered LDevID device an impostor poses as


OPERATIONAL = LifecycleState.OPERATIONAL
SCENARIOS = (
    Scenario("known operational, attested affirming", "SN-1001", "ldevid", OPERATIONAL, "production", False,
             "accept VLAN 30", attestation="affirming"),
    Scenario("genuine unknown (IDevID)", "SN-2002", "idevid", None, None, False, "quarantine VLAN 999",
             mud_url="https://mud.acme.example/thermostat.json"),
    Scenario("quarantined (LDevID)", "SN-3003", "ldevid", LifecycleState.QUARANTINED, "cameras", False,
             "quarantine VLAN 999"),
    Scenario("revoked (LDevID)", "SN-4004", "ldevid", LifecycleState.OPERATIONAL, "production", True, "reject"),
    Scenario("untrusted CA", "SN-5005", "rogue", None, None, False, "reject"),
    Scenario("operational, attestation warning", "SN-1102", "ldevid", OPERATIONAL, "production", False,
             "accept VLAN 35", attestation="warning"),
    Scenario("operational, contraindicated", "SN-1103", "ldevid", OPERATIONAL, "production", False,
             "quarantine VLAN 999", attestation="contraindicated"),
    Scenario("operational, token for another key", "SN-1104", "ldevid", OPERATIONAL, "production", False,
             "accept VLAN 35", attestation="foreign"),
    Scenario("impostor: look-alike LDevID CA", "FORGED-1", "ldevid", None, None, False, "reject",
             forge="lookalike-ca", claims="SN-1001"),
    Scenario("impostor: CN hides SN-1001's serial", "FORGED-2", "ldevid", None, None, False, "reject",
             forge="cn-hides-serial", claims="SN-1001"),
    Scenario("impostor: 2nd LDevID, SN-1001's serial", "FORGED-3", "ldevid", None, None, False, "reject",
             forge="second-certificate", claims="SN-1001"),
    Scenario("registered LDevID with a DSA key", "SN-1105", "ldevid", OPERATIONAL, "production", False, "reject",
             forge="dsa-key"),
)


@dataclass(frozen=True)
class LabRow:
    scenario: Scenario
    result: EapolResult
    got: str
    state_after: str
    reasons: str

    @property
    def as_expected(self) -> bool:
        return self.got == self.scenario.expected


def vlan_outcome(result: EapolResult) -> str:
    """What an authentication got, as the lab's scenarios and stories state what they expect."""
    if result.code == "Access-Accept" and result.vlan is not None:
        return ("quarantine" if result.vlan == SEGMENTS["quarantine"] else "accept") + f" VLAN {result.vlan}"
    if result.code == "Access-Reject":
        return "reject" if result.eap_code == 4 else f"reject (EAP code {result.eap_code}, expected 4)"
    return f"{result.code} without VLAN" if result.code != "none" else "no answer"


def build_lab(work: Path, now: datetime, extra_config: dict[str, object] | None = None,
              ) -> tuple[Path, dict[str, tuple[Path, Path]], dict[str, Issued]]:
    """PKI, CRL and config file for the lab; returns (config path, device cert/key paths, CAs)."""
    pki = work / "pki"
    cas = {
        "idevid": make_ca("Acme Manufacturer IDevID CA", "Acme Devices", now=now),
        "ldevid": make_ca("trustport LDevID CA", "Example Site", now=now),
        "rogue": make_ca("Rogue CA", "Acme Devices", now=now),
        "server": make_ca("trustport RADIUS server CA", "Example Site", now=now),
        # the owner CA trustport runs itself (the ca: section): EST issues LDevIDs with it, 'ca revoke' revokes
        "owner": make_ca("trustport owner CA", "Example Site", now=now, path_length=0),
    }
    for name, ca in cas.items():
        ca.write(pki, f"{name}-ca")
    issue_server(cas["server"], SERVER_NAME, now=now).write(pki, "server")
    devices: dict[str, tuple[Path, Path]] = {}
    revoked: list[int] = []
    for scenario in SCENARIOS:
        if scenario.forge is not None:
            devices[scenario.serial] = forge(scenario.forge, cas, now, pki, scenario.serial)
            continue
        # LDevIDs expire (825 days at most by default); IDevIDs keep 802.1AR's 99991231235959Z
        issued = issue_device(cas[scenario.issuer], cn=f"{scenario.serial.lower()}.devices.example",
                              serial_number=scenario.serial, now=now, mud_url=scenario.mud_url,
                              not_after=now + timedelta(days=365) if scenario.issuer == "ldevid" else NO_EXPIRY)
        devices[scenario.serial] = issued.write(pki, scenario.serial)
        if scenario.revoked:
            revoked.append(issued.cert.serial_number)
    crl_dir = work / "crl"
    crl_dir.mkdir(exist_ok=True)
    (crl_dir / "ldevid.crl").write_bytes(crl_pem(make_crl(cas["ldevid"], revoked, now=now)))
    (crl_dir / "owner.crl").write_bytes(crl_pem(make_crl(cas["owner"], [], now=now)))  # 'ca revoke' republishes it
    secret_file = work / "radius-secret"
    # urlsafe text can start with "-", which radclient and eapol_test read as an option: start with letters
    write_private(secret_file, ("tp" + secrets.token_urlsafe(24)).encode())
    write_private(work / "api-token", secrets.token_urlsafe(32).encode())
    verifier = new_signing_key("p256")
    write_private(work / "verifier.key", verifier.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_public_jwk(verifier, work / "verifier.jwk")
    auth_port = free_port(count=2)
    config: dict[str, object] = {
        "site": "lab",
        "radius": {
            "listen_address": "127.0.0.1", "auth_port": auth_port, "acct_port": auth_port + 1,
            "reject_delay": 0, "run_as_user": None,
            "server_certificate": "pki/server.pem", "server_key": "pki/server.key",
            "clients": [{"name": "lab-nas", "address": "127.0.0.1/32", "secret": {"file": "radius-secret"}}],
        },
        "trust_anchors": [
            {"name": "acme-idevid", "role": "idevid", "file": "pki/idevid-ca.pem"},
            {"name": "site-ldevid", "role": "ldevid", "file": "pki/ldevid-ca.pem"},
            {"name": "owner-ldevid", "role": "ldevid", "file": "pki/owner-ca.pem"},
        ],
        "revocation": {"crl_dir": "crl", "refresh_seconds": 1, "require_crl_for": ["ldevid"]},
        "segments": SEGMENTS,
        "policy": {"quarantine_segment": "quarantine", "default_segment": "production",
                   "onboarding_segment": "onboarding"},
        "ca": {"name": "owner", "certificate": "pki/owner-ca.pem", "key": "pki/owner-ca.key"},
        "enrollment": {"listen_address": "127.0.0.1", "port": free_port(socket.SOCK_STREAM),
                       "retry_after_seconds": 60},
        "database": {"url": "sqlite:///registry.sqlite"},
        "attestation": {
            "verifier_keys": [{"name": "lab-verifier", "file": "verifier.jwk"}],
            "max_age_seconds": 3600, "warning_segment": "restricted", "missing_ldevid_segment": "restricted",
        },
        "api": {"listen_address": "127.0.0.1", "port": free_port(socket.SOCK_STREAM),
                "tokens": [{"name": "lab-verifier", "secret": {"file": "api-token"}}]},
    }
    config.update(extra_config or {})
    config_path = work / "trustport.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path, devices, cas


class Lab:
    """The lab's PKI, config, registry and a running FreeRADIUS; a context manager that stops what it started."""

    def __init__(self, work: Path, now: datetime, echo: Callable[[str], None] = print,
                 extra_config: dict[str, object] | None = None) -> None:
        self.work = work
        self.now = now
        self.echo = echo
        self.config_path, self.devices, self.cas = build_lab(work, now, extra_config)
        self.config = load_config(self.config_path)
        self.store = SqlDeviceStore(self.config.database_url(), create=True)
        self.server = RadiusServer(work / "raddb", work / "radiusd.log")
        self.macs: dict[str, str] = {}  # serial -> the MAC its supplicant uses (stable across re-authentications)
        self.ports: dict[str, int] = {}  # serial -> NAS-Port it is plugged into
        self.attestation_rows: list[str] = []
        self._reader: SqlDeviceStore | None = None

    def __enter__(self) -> Lab:
        try:
            for scenario in SCENARIOS:
                if scenario.registry_state is not None:
                    facts = facts_from_certificate(self.certificate(scenario.serial))
                    self.store.add_device(DeviceKey(facts.issuer, scenario.serial), state=scenario.registry_state,
                                          now=self.now, segment=scenario.segment, owner="lab", facts=facts)
            self.attestation_rows = post_attestations(self)
            render(self.config, self.work / "raddb")
            self.server.check()
            self.echo(f"FreeRADIUS config {self.work / 'raddb'} passes 'freeradius -XC'; "
                      f"starting on 127.0.0.1:{self.config.radius.auth_port}")
            self.server.__enter__()
        except BaseException:
            self.store.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.store.close()
        if self._reader is not None:
            self._reader.close()

    def certificate(self, serial: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.devices[serial][0].read_bytes())

    def authenticate(self, serial: str, *, nas_port: int | None = None) -> EapolResult:
        """One real 802.1X EAP-TLS authentication of device ``serial`` with eapol_test (same MAC and NAS port
        every time for the same device, unless ``nas_port`` moves it)."""
        cert_path, key_path = self.devices[serial]
        if serial not in self.macs:
            n = len(self.macs) + 1
            self.macs[serial] = f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"
        if nas_port is not None or serial not in self.ports:
            self.ports[serial] = nas_port if nas_port is not None else len(self.ports) + 1
        conf = write_eapol_conf(self.work / f"eapol-{serial}.conf", identity=f"{serial.lower()}.devices.example",
                                ca_cert=self.work / "pki" / "server-ca.pem", client_cert=cert_path,
                                private_key=key_path)
        result = run_eapol(conf, port=self.config.radius.auth_port,
                           secret=self.config.radius.clients[0].secret.get_secret_value(),
                           mac=self.macs[serial], nas_port=self.ports[serial])
        self.settle()
        return result

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until radiusd's journal is in the registry (its drainer applies it within milliseconds), so what
        the lab reads next (decision log, sessions) includes the authentication that just ended."""
        directory = self.config.journal_dir()
        if directory is None:
            return
        if self._reader is None:  # not the lab's own store: that one may create a schema, this one only reads
            self._reader = SqlDeviceStore(self.config.database_url())
        try:
            self._reader.ensure_schema()
        except StoreError:
            return  # a registry that is down or damaged takes nothing: the journal keeps it until it is back
        wait_for_journal(directory, self._reader, timeout)


def auth_path_lines(lab: Lab) -> list[str]:
    """The radiusd's registry cache (generation applied, lease) and journal (what is not in the registry yet)."""
    lab.settle()
    with lab.store.transaction("reading the registry caches") as conn:
        current, now, views = changes.caches(conn)
    live = [v for v in views if v.lease_until > now]
    lines = [f"registry cache of radiusd {v.cache_id.rsplit(':', 1)[-1]}: generation {v.generation} of {current} "
             f"({current - v.generation} behind), lease {(v.lease_until - now).total_seconds():.1f} s left; every "
             "operator action above returned only once it had applied it" for v in live] or [
        "no live registry cache (auth_path.cache is off, or radiusd has not authenticated anyone yet)"]
    directory = lab.config.journal_dir()
    if directory is not None:
        status = journal_status(directory, lab.store)
        logged = len(lab.store.decisions(None, limit=100_000))
        lines.append(f"journal {directory.name}/: {status.pending_bytes} byte(s) not in the registry yet; "
                     f"{logged} decisions in the registry's log, each written to the journal before its answer")
    return lines


def issue_lab_idevid(lab: Lab, serial: str) -> tuple[Path, Path]:
    """A new device from the manufacturer: a genuine IDevID the registry has never seen."""
    issued = issue_device(lab.cas["idevid"], cn=f"{serial.lower()}.devices.example", serial_number=serial,
                          now=lab.now, mud_url="https://mud.acme.example/sensor.json", not_after=NO_EXPIRY)
    lab.devices[serial] = issued.write(lab.work / "pki", serial)
    return lab.devices[serial]


@dataclass(frozen=True)
class LabRun:
    rows: list[LabRow]
    story: list[StoryRow]
    onboarding: OnboardStory | None  # None: a program it needs is missing (``missing``)
    missing: list[str]
    directory: DirectoryStory | None = None  # None: it could not run (``directory_missing`` says why)
    directory_missing: str | None = None


def run_lab(work: Path | None = None, echo: Callable[[str], None] = print,
            hold: Callable[[Lab, LabNetwork, LabRun], None] | None = None) -> LabRun:
    """Every scenario and story; ``hold`` (``trustport lab --dashboard``) is called with the lab still running,
    before it is taken down."""
    with tempfile.TemporaryDirectory(prefix="trustport-lab-") as tmp, contextlib.ExitStack() as stack:
        base = work or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        echo(f"lab directory: {base}")
        network = stack.enter_context(lab_network(base))
        directory_missing = unavailable()
        slapd = None if directory_missing else stack.enter_context(lab_slapd(base))
        extra = dict(network.extra_config)
        if slapd is not None:
            extra["directory"] = directory_section(slapd, base)
        lab = stack.enter_context(Lab(base, datetime.now(UTC), echo, extra))
        echo("attestation results posted to the REST API by the lab's verifier:")
        for line in lab.attestation_rows:
            echo(f"  {safe_text(line)}")  # the API's answer quotes the token's reasons
        rows = []
        for scenario in SCENARIOS:
            result = lab.authenticate(scenario.serial)
            apply_radius_vlan(network, lab.ports[scenario.serial], result.vlan)
            rows.append(_row(lab, scenario, result))
        echo("")
        echo(format_rows(rows))
        echo("\ncontinuous authorization: devices already on the network change standing")
        story = run_story(lab, network, echo)
        echo("")
        echo(format_story(story))
        echo("\nonboarding: unknown IDevID -> EST enrolment -> LDevID -> production -> revoked")
        missing = missing_tools()
        onboarding = None
        if missing:
            echo(f"  cannot run the onboarding story: {' and '.join(missing)} not found on PATH (install the "
                 "Debian package(s) " + " ".join(missing) + ")")
        else:
            onboarding = run_onboarding(lab, network, echo)
            echo("")
            echo(format_onboarding(onboarding))
            if onboarding.enrolment_ms is not None:
                echo(f"enrolment latency (curl request with the CSR -> LDevID received): "
                     f"{onboarding.enrolment_ms:.0f} ms")
        echo("\ndirectory: directory-approved -> disabled -> outage -> removed (OpenLDAP over LDAPS)")
        if slapd is None:
            echo(f"  cannot run the directory story: {directory_missing}")
            run = LabRun(rows, story, onboarding, missing, None, directory_missing)
        else:
            directory = run_directory(lab, network, slapd, echo)
            echo("")
            echo(format_directory(directory))
            sync_time = format_sync_time(directory)
            if sync_time is not None:
                echo(sync_time)
            run = LabRun(rows, story, onboarding, missing, directory)
        echo("\nauth path: what the running radiusd answered from memory and journaled (docs/performance.md)\n  "
             + "\n  ".join(auth_path_lines(lab)))
        if hold is not None:
            hold(lab, network, run)
        return run


def _row(lab: Lab, scenario: Scenario, result: EapolResult) -> LabRow:
    serial = scenario.claims or scenario.serial
    issuer = oneline_dn(lab.cas[scenario.issuer].cert.subject)
    device = lab.store.find_device(DeviceKey(issuer, serial))
    mac = lab.macs[scenario.serial].replace(":", "-").lower()
    entries = [e for e in lab.store.decisions(None, limit=50) if (e.context.calling_station_id or "").lower() == mac]
    reasons = "; ".join(entries[0].reasons) if entries else "(no decision logged)"
    state = device.state.value if device else "not registered"
    if scenario.claims is not None and device is not None:  # the victim's record, after the impostor tried
        own = format(lab.certificate(scenario.claims).serial_number, "x")
        state = f"{serial} {state}, " + ("bound to its own cert" if device.cert_serial == own else "BINDING CHANGED")
    return LabRow(scenario, result, vlan_outcome(result), state, reasons)


def format_rows(rows: list[LabRow]) -> str:
    return table(("scenario", "expected", "got", "registry", "ms", "why"), [
        (r.scenario.name, r.scenario.expected, r.got + ("" if r.as_expected else "  <-- UNEXPECTED"),
         r.state_after, f"{r.result.seconds * 1000:.0f}", r.reasons) for r in rows])
