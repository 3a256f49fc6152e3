"""A corpus of configuration and policy mistakes, each reported at its place (``file:line: path``) with a specific
message, through ``check_config`` and through ``trustport config check`` — never a traceback, never a hang.

Each case edits one good config (below, with known line numbers) the way an engineer might get it wrong.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.pki_fixtures import DevicePki
from trustport.cli.main import cli
from trustport.settings.config import check_config, load_config

BASE = """\
radius:
  server_certificate: {server_cert}
  server_key: {server_key}
  clients:
    - {{name: sw, address: 10.0.0.0/8, secret: s3cr3t-shared-secret-value}}
trust_anchors:
  - {{name: acme, role: idevid, file: {idevid_ca}}}
  - {{name: site, role: ldevid, file: {ldevid_ca}}}
segments:
  production: 30
  restricted: 35
  quarantine: 999
sites:
  campus: [10.10.0.0/16]
  branch: [10.20.0.0/16]
policy:
  default_segment: production
  rules:
    - name: r1
      match: {{site: campus, cert_kind: ldevid}}
      segment: restricted
"""
BILLION_LAUGHS = "".join(
    [f'{chr(97 + i)}: &{chr(97 + i)} [' + ",".join([f"*{chr(96 + i)}" if i else '"lol"'] * 9) + "]\n"
     for i in range(9)])


@dataclass(frozen=True)
class Mistake:
    name: str
    edit: Callable[[str, Path, DevicePki], str | bytes]  # good config text, its directory -> the mistaken file
    location: str  # regex for the location after the file name, e.g. r":20: policy\.rules\.0\.match\.site"
    message: str  # regex for the message


def sub(old: str, new: str) -> Callable[[str, Path, DevicePki], str]:
    def edit(text: str, _tmp: Path, _pki: DevicePki) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def append(extra: str) -> Callable[[str, Path, DevicePki], str]:
    return lambda text, _tmp, _pki: text + extra


def fifo(name: str) -> Path:
    os.mkfifo(name)
    return Path(name)


def anchor_file(make: Callable[[Path, DevicePki], Path]) -> Callable[[str, Path, DevicePki], str]:
    def edit(text: str, tmp: Path, pki: DevicePki) -> str:
        return text.replace(str(pki.cert_path("idevid-ca")), str(make(tmp, pki)), 1)
    return edit


def _loop(tmp: Path, _pki: DevicePki) -> Path:
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    return tmp / "loop-a"


def _same_ca_twice(text: str, _tmp: Path, pki: DevicePki) -> str:
    return text.replace(str(pki.cert_path("ldevid-ca")), str(pki.cert_path("idevid-ca")))


def _random_server_cert(text: str, tmp: Path, pki: DevicePki) -> str:
    (tmp / "random.pem").write_bytes(os.urandom(700))
    return text.replace(str(pki.cert_path("server")), str(tmp / "random.pem"))


def _foreign_server_key(text: str, _tmp: Path, pki: DevicePki) -> str:
    return text.replace(str(pki.key_path("server")), str(pki.key_path("ldevid-ok")))


def _policy_file(make: Callable[[Path], Path]) -> Callable[[str, Path, DevicePki], str]:
    def edit(text: str, tmp: Path, _pki: DevicePki) -> str:
        head = text[: text.index("segments:")]
        return head + f"policy_file: {make(tmp)}\n"
    return edit


def _secret_fifo(text: str, tmp: Path, _pki: DevicePki) -> str:
    fifo(str(tmp / "secret.fifo"))
    return text.replace("secret: s3cr3t-shared-secret-value", f"secret: {{file: {tmp / 'secret.fifo'}}}")


def _verifier_section(placement: str) -> str:
    return f"attestation:\n  verifier_keys: [{{name: v, file: nowhere.jwk}}]\n{placement}"


MISTAKES = [
    # typos that used to make a rule a silent no-op
    Mistake("site typo", sub("site: campus,", "site: branh,"), r":20: policy\.rules\.0\.match\.site",
            r"site 'branh' is not defined in sites"),
    Mistake("cert_kind typo", sub("cert_kind: ldevid", "cert_kind: ldevd"), r":20: policy\.rules\.0\.match\.cert_kind",
            r"'ldevd' is not a known value; known: idevid, ldevid"),
    Mistake("state typo", sub("cert_kind: ldevid", "state: operationl"), r":20: policy\.rules\.0\.match\.state",
            r"'operationl' is not a known value"),
    Mistake("attestation typo", sub("cert_kind: ldevid", "attestation: afirming"),
            r":20: policy\.rules\.0\.match\.attestation", r"'afirming' is not a known value"),
    Mistake("mud_class typo", sub("cert_kind: ldevid", "mud_class: internet_only"),
            r":20: policy\.rules\.0\.match\.mud_class", r"'internet_only' is not a known value"),
    Mistake("state a rule never sees", sub("cert_kind: ldevid", "state: quarantined"),
            r":20: policy\.rules\.0\.match\.state", r"'quarantined' is not a known value"),
    Mistake("site glob matching no site", sub("site: campus,", "site: 'camp*x',"),
            r":20: policy\.rules\.0\.match\.site", r"site 'camp\*x' is not defined"),
    Mistake("enum glob matching nothing", sub("cert_kind: ldevid", "cert_kind: 'x*'"),
            r":20: policy\.rules\.0\.match\.cert_kind", r"'x\*' is not a known value"),
    # VLANs
    Mistake("two segments on one VLAN", sub("restricted: 35", "restricted: 30"), r":11: segments\.restricted",
            r"VLAN 30 is already segment 'production'"),
    Mistake("quarantine VLAN is production's", sub("quarantine: 999", "quarantine: 30"),
            r":12: segments\.quarantine", r"quarantine VLAN must be used by no other segment"),
    Mistake("boolean VLAN", sub("production: 30", "production: true"), r":10: segments\.production",
            r"not the boolean true"),
    Mistake("string VLAN", sub("production: 30", "production: '30'"), r":10: segments\.production",
            r"an integer 1-4094, not str '30'"),
    Mistake("VLAN out of range", sub("production: 30", "production: 5000"), r":10: segments\.production",
            r"VLAN 5000 is outside 1-4094"),
    Mistake("per-site VLAN clash", sub("restricted: 35", "restricted: {vlan: 35, sites: {branch: 30}}"),
            r":11: segments\.restricted\.sites\.branch", r"VLAN 30 at site branch is already segment 'production'"),
    Mistake("per-site VLAN for an undefined site", sub("restricted: 35", "restricted: {vlan: 35, sites: {mars: 36}}"),
            r":11: segments\.restricted\.sites\.mars", r"site 'mars' is not defined"),
    # references
    Mistake("rule to an undefined segment", sub("segment: restricted", "segment: mars"),
            r":21: policy\.rules\.0\.segment", r"segment 'mars' is not defined in segments"),
    Mistake("default segment undefined", sub("default_segment: production", "default_segment: prod"),
            r":17: policy\.default_segment", r"segment 'prod' is not defined"),
    Mistake("empty rule name", sub("- name: r1", "- name: ''"), r":19: policy\.rules\.0\.name", r"'name' is required"),
    Mistake("duplicate rule names", append("    - {name: r1, match: {site: branch}, reject: true}\n"),
            r":22: policy\.rules\.1\.name", r"rule name 'r1' is already used by rule #1"),
    Mistake("unknown rule key", sub("segment: restricted", "segmnet: restricted"),
            r":21: policy\.rules\.0\.segmnet", r"unknown key 'segmnet'"),
    Mistake("anchor name used twice", sub("{name: site, role: ldevid", "{name: acme, role: ldevid"),
            r":8: trust_anchors\.1\.name", r"trust anchor name 'acme' is already used"),
    Mistake("attestation placement half given", append(_verifier_section("  missing_idevid_segment: quarantine\n")),
            r":22: attestation", r"also needs warning_segment, missing_ldevid_segment"),
    Mistake("attestation placement to an undefined segment",
            append(_verifier_section("  placement: {warning_segment: amber, missing_ldevid_segment: restricted}\n")),
            r":24: attestation\.placement\.warning_segment", r"warning_segment 'amber' is not defined"),
    # types and keys
    Mistake("unknown top-level key", append("colour: red\n"), r":22: colour", r"unknown key 'colour'"),
    # the auth path: a cache that could not renew its lease in time, a lease the barrier would not outwait
    Mistake("auth_path lease shorter than its refresh",
            append("auth_path: {refresh_seconds: 0.8, lease_seconds: 0.5}\n"),
            r":22: auth_path", r"refresh_seconds \(0\.8\) must be below lease_seconds \(0\.5\)"),
    Mistake("auth_path lease over the barrier's bound", append("auth_path: {lease_seconds: 60}\n"),
            r":22: auth_path\.lease_seconds", r"less than or equal to 5"),
    Mistake("auth_path journal flush of zero", append("auth_path: {journal_flush_seconds: 0}\n"),
            r":22: auth_path\.journal_flush_seconds", r"greater than 0"),
    Mistake("auth_path typo", append("auth_path: {jounral: false}\n"), r":22: auth_path\.jounral",
            r"unknown key 'jounral'"),
    Mistake("wrong type", sub("radius:\n", "radius:\n  auth_port: abc\n"), r":2: radius\.auth_port",
            r"valid integer"),
    Mistake("negative timeout", append("revocation: {refresh_seconds: -1}\n"), r":22: revocation\.refresh_seconds",
            r"greater than 0"),
    Mistake("duplicate top-level key", append("segments:\n  other: 50\n"), r":22: segments",
            r"duplicate key 'segments' \(first given at line 9\)"),
    Mistake("duplicate nested key", sub("  restricted: 35\n", "  restricted: 35\n  production: 31\n"),
            r":12: segments\.production", r"duplicate key 'production' \(first given at line 10\)"),
    Mistake("empty file", lambda _t, _d, _p: "", r":1: \(top level\)", r"must be a mapping"),
    # certificate files and their roles
    Mistake("anchor that is a leaf certificate", anchor_file(lambda _t, pki: pki.cert_path("idevid-ok")),
            r":7: trust_anchors\.0\.file", r"is not a CA certificate"),
    Mistake("one CA under two roles", _same_ca_twice, r":6: trust_anchors", r"also configured as|another role"),
    Mistake("anchor file missing", anchor_file(lambda tmp, _p: tmp / "nope.pem"), r":7: trust_anchors\.0\.file",
            r"No such file"),
    Mistake("anchor file is a FIFO", anchor_file(lambda tmp, _p: fifo(str(tmp / "anchor.fifo"))),
            r":7: trust_anchors\.0\.file", r"is a FIFO \(named pipe\), not a regular file"),
    Mistake("anchor file is /dev/zero", anchor_file(lambda _t, _p: Path("/dev/zero")),
            r":7: trust_anchors\.0\.file", r"/dev/zero is a character device"),
    Mistake("anchor file is a symlink loop", anchor_file(_loop), r":7: trust_anchors\.0\.file", r"symlink loop"),
    Mistake("anchor file is a directory", anchor_file(lambda tmp, _p: tmp), r":7: trust_anchors\.0\.file",
            r"is a directory"),
    Mistake("server certificate of random bytes", _random_server_cert, r":2: radius\.server_certificate",
            r"is not a PEM certificate"),
    Mistake("server key of another certificate", _foreign_server_key, r":3: radius\.server_key",
            r"does not belong to the server certificate"),
    Mistake("secret file is a FIFO", _secret_fifo, r":5: radius\.clients\.0\.secret", r"is a FIFO"),
    # the policy file
    Mistake("policy_file is a directory", _policy_file(lambda tmp: tmp), r":9: policy_file", r"is a directory"),
    Mistake("policy_file is a FIFO", _policy_file(lambda tmp: fifo(str(tmp / "policy.fifo"))), r":9: policy_file",
            r"is a FIFO"),
    # the YAML itself
    Mistake("billion laughs", lambda _t, _d, _p: BILLION_LAUGHS, r":1", r"expands to more than 200000 values"),
    Mistake("500-deep nesting", lambda t, _d, _p: t + "deep: " + "[" * 500 + "]" * 500 + "\n", r":22",
            r"nested more than 50 levels deep"),
    Mistake("500-deep block nesting", lambda t, _d, _p: t + "".join("  " * i + f"k{i}:\n" for i in range(500)),
            r":71", r"nested more than 50 levels deep"),
    Mistake("2 MiB of YAML", lambda t, _d, _p: t + "# padding\n" * (2 << 17), r"", r"larger than 1048576 bytes"),
    Mistake("non-UTF-8 bytes", lambda t, _d, _p: (t + "colour: r\xe9d\n").encode("latin-1"), r":22",
            r"not UTF-8 \(byte 0xe9"),
    Mistake("byte-order mark", lambda t, _d, _p: b"\xef\xbb\xbf" + t.encode(), r":1", r"byte-order mark"),
    Mistake("tab indentation", sub("  default_segment", "\tdefault_segment"), r":17",
            r"a tab character where YAML allows none"),
    Mistake("NUL byte", lambda t, _d, _p: t + "x: \x00\n", r":22", r"NUL byte"),
]


def _write(tmp_path: Path, pki: DevicePki, mistake: Mistake) -> Path:
    good = BASE.format(server_cert=pki.cert_path("server"), server_key=pki.key_path("server"),
                       idevid_ca=pki.cert_path("idevid-ca"), ldevid_ca=pki.cert_path("ldevid-ca"))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        content = mistake.edit(good, tmp_path, pki)
    finally:
        os.chdir(cwd)
    path = tmp_path / "trustport.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_the_base_config_is_good(pki: DevicePki, tmp_path: Path) -> None:
    path = _write(tmp_path, pki, Mistake("none", lambda t, _d, _p: t, "", ""))
    config = load_config(path)
    assert config.segment_rules().rules[0].name == "r1"


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_mistake_is_reported_at_its_place(pki: DevicePki, tmp_path: Path, mistake: Mistake) -> None:
    path = _write(tmp_path, pki, mistake)
    started = time.monotonic()
    _config, problems = check_config(path)
    assert time.monotonic() - started < 3
    assert problems, f"{mistake.name}: accepted"
    wanted = re.compile(re.escape(str(path)) + mistake.location)
    assert any(wanted.match(p.location) and re.search(mistake.message, p.message) for p in problems), \
        "\n".join(str(p) for p in problems)
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert time.monotonic() - started < 5
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a problem list, not a traceback
    assert "Traceback" not in result.output
    assert re.search(mistake.message, result.output), result.output


def test_every_problem_in_one_run(pki: DevicePki, tmp_path: Path) -> None:
    edits = [sub("site: campus,", "site: branh,"), sub("restricted: 35", "restricted: 30"),
             sub("production: 30", "production: true"), sub("{name: site, role: ldevid", "{name: acme, role: ldevid"),
             append("colour: red\n")]

    def edit(text: str, tmp: Path, p: DevicePki) -> str:
        for one in edits:
            text = str(one(text, tmp, p))
        return text

    path = _write(tmp_path, pki, Mistake("all", edit, "", ""))
    _config, problems = check_config(path)
    text = "\n".join(str(p) for p in problems)
    for where in (":20: policy.rules.0.match.site", ":10: segments.production", ":8: trust_anchors.1.name",
                  ":22: colour"):
        assert f"{path}{where}" in text, text


def test_policy_problems_reported_when_other_sections_fail(pki: DevicePki, tmp_path: Path) -> None:
    path = _write(tmp_path, pki, Mistake("both", lambda t, d, p: str(sub("cert_kind: ldevid", "cert_kind: ldevd")(
        t, d, p)) + "colour: red\n", "", ""))
    _config, problems = check_config(path)
    text = "\n".join(str(p) for p in problems)
    assert ":22: colour" in text and "'ldevd' is not a known value" in text, text


POLICY_MISTAKES = [
    ("segments:\n  a: 1\n  quarantine: 1\n", r":3: segments\.quarantine", r"quarantine VLAN"),
    ("segments:\n  quarantine: 9\npolicy:\n  rules:\n    - {name: x, match: {state: pendng}, reject: true}\n",
     r":5: policy\.rules\.0\.match\.state", r"'pendng' is not a known value"),
    ("segments:\n  quarantine: 9\n  quarantine: 8\n", r":3: segments\.quarantine", r"duplicate key"),
    ("segments:\n  quarantine: 9\ncolour: red\n", r":3: colour", r"a policy file holds only"),
]


@pytest.mark.parametrize(("text", "location", "message"), POLICY_MISTAKES)
def test_policy_file_mistakes(tmp_path: Path, text: str, location: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["policy", "check", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert re.search(re.escape(str(path)) + location + r": .*" + message, result.output), result.output


def test_policy_file_fifo_does_not_block(tmp_path: Path) -> None:
    path = fifo(str(tmp_path / "policy.fifo"))
    result = CliRunner().invoke(cli, ["policy", "check", str(path)])
    assert result.exit_code == 1 and "is a FIFO" in result.output


def test_mistake_in_the_policy_file_is_located_there(pki: DevicePki, tmp_path: Path) -> None:
    policy = tmp_path / "segments.yaml"
    policy.write_text("segments:\n  production: 30\n  quarantine: 999\npolicy:\n  rules:\n"
                      "    - {name: a, match: {cert_kind: ldevd}, segment: production}\n")

    def edit(text: str, _tmp: Path, _pki: DevicePki) -> str:
        return text[: text.index("segments:")] + f"policy_file: {policy}\n"

    path = _write(tmp_path, pki, Mistake("policy file", edit, "", ""))
    _config, problems = check_config(path)
    assert [str(p) for p in problems] == [
        f"{policy}:6: policy.rules.0.match.cert_kind: field 'cert_kind': 'ldevd' is not a known value; "
        "known: idevid, ldevid"]
