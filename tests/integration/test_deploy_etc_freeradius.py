"""docs/freeradius.md, "Installing into an existing /etc/freeradius/3.0", followed step by step on a copy of
Debian's /etc/freeradius/3.0: radiusd runs as freerad, a device authenticates through Debian's ``default`` site
and gets its VLAN, and accounting Start/Stop open and close its session in the registry.

The real /etc is only read. Test-only changes to the copy: raddbdir/logdir/run_dir point into the test's
directory, the listeners are on free loopback ports (Debian's listen on *:1812, [::]:1812 and inner-tunnel's
127.0.0.1:18120), and PYTHONPATH comes from radiusd_env() instead of the systemd drop-in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trustport.cli.main import cli
from trustport.freeradius import render as render_module
from trustport.freeradius import run as run_module
from trustport.freeradius.run import RadiusServer, free_port, require_tool, run_eapol, write_eapol_conf
from trustport_lab.lab import build_lab

DEBIAN_RADDB = Path("/etc/freeradius/3.0")
USER = "freerad"
DEVICE, MAC = "SN-1001", "02:00:00:00:00:01"  # an LDevID device; registered operational in segment production
PRODUCTION_VLAN = 30

pytestmark = pytest.mark.integration


# -- editing FreeRADIUS configuration text: sections are brace-balanced, comments start with '#' --------------

def _section(text: str, header: str) -> tuple[int, int]:
    """(start, end) of the section whose first line is ``header`` (matched at a line start, tabs included)."""
    match = re.search(rf"(?m)^{re.escape(header)}\s*$", text)
    assert match is not None, f"no section {header!r}"
    depth, pos = 0, match.start()
    for line in text[match.start():].splitlines(keepends=True):
        code = line.split("#", 1)[0]
        depth += code.count("{") - code.count("}")
        pos += len(line)
        if depth == 0:
            return match.start(), pos
    raise AssertionError(f"section {header!r} is not closed")


def _replace_section(text: str, header: str, new: str) -> str:
    start, end = _section(text, header)
    return text[:start] + new + text[end:]


def _append_to_section(text: str, header: str, lines: str) -> str:
    """Insert ``lines`` just before the closing brace of the section."""
    _start, end = _section(text, header)
    close = text.rindex("}", 0, end)
    line_start = text.rindex("\n", 0, close) + 1
    return text[:line_start] + lines + text[line_start:]


def _insert_before(text: str, header: str, anchor: str, lines: str) -> str:
    start, end = _section(text, header)
    at = text.index(anchor, start, end)
    line_start = text.rindex("\n", 0, at) + 1
    return text[:line_start] + lines + text[line_start:]


@dataclass(frozen=True)
class Install:
    """trustport as freerad reaches it: the checkout and its venv bind-mounted under the 0755 work directory, as
    a deployment installs it under /opt (the checkout itself may sit below a directory freerad cannot enter)."""

    python: Path  # the venv's interpreter, under the mount
    source: Path  # the source tree (policy, radius_hooks, trustport, ...), under the mount
    site_packages: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.source), str(self.site_packages)])}


def _as(user: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def _trustport(install: Install, *args: str) -> list[str]:
    return [str(install.python), "-m", "trustport.cli.main", *args]


# -- the deployment -------------------------------------------------------------------------------------------

@pytest.fixture
def work() -> Iterator[Path]:
    """Under /tmp, not pytest's 0700 tmp_path: freerad must reach it, as it reaches /etc and /var/lib."""
    missing = [what for what, ok in (("root", os.geteuid() == 0),
                                     ("Debian's /etc/freeradius/3.0", (DEBIAN_RADDB / "radiusd.conf").is_file()),
                                     ("runuser", shutil.which("runuser") is not None)) if not ok]
    if missing:
        pytest.fail(f"the deployment test needs {', '.join(missing)} (make test installs the packages)", pytrace=False)
    path = Path(tempfile.mkdtemp(prefix="tp-deploy-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    if not os.environ.get("TRUSTPORT_KEEP_DEPLOY"):  # set it to look at the files after a failure
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def install(work: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    repo = Path(render_module.__file__).resolve().parents[2]
    venv = Path(sys.prefix)
    mounts: list[Path] = []
    try:
        def bind(source: Path, name: str) -> Path:
            target = work / "opt" / name
            target.mkdir(parents=True)
            os.chmod(work / "opt", 0o755)
            proc = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(target)], capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                pytest.fail(f"cannot bind-mount {source} for freerad: {proc.stderr.strip()}", pytrace=False)
            mounts.append(target)
            return target

        # each package and the venv on its own: the checkout's own directory may be 0700 (a mktemp clone)
        source = work / "opt" / "trustport"
        for package in ("policy", "radius_hooks", "trustport", "switch_drivers", "trustport_lab"):
            bind(repo / package, f"trustport/{package}")
        os.chmod(source, 0o755)
        venv_at = bind(venv, "trustport/.venv" if venv.is_relative_to(repo) else "venv")
        site = venv_at / Path(render_module.site_packages()).relative_to(venv)
        for module in (render_module, run_module):  # what the rendered python3 module and radiusd's env name
            monkeypatch.setattr(module, "python_path", lambda: str(source))
            monkeypatch.setattr(module, "site_packages", lambda: str(site))
        yield Install(venv_at / Path(sys.executable).relative_to(venv), source, site)
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


def _lab_config(etc: Path, registry: Path) -> Path:
    config_path, _devices, _cas = build_lab(etc, datetime.now(UTC))
    config = yaml.safe_load(config_path.read_text())
    config["radius"]["run_as_user"] = USER  # the default; the lab runs radiusd as itself
    config["database"] = {"url": f"sqlite:///{registry}"}
    for section in ("attestation", "api"):  # not part of this story
        config.pop(section, None)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path


def _render(config: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["radius", "render", "--config", str(config), "--out", str(out)])
    return result.exit_code, result.output


def _merge(raddb: Path, out: Path) -> None:
    """docs/freeradius.md, "Installing into an existing /etc/freeradius/3.0", steps 5 to 10."""
    # 5. the python3 module, as rendered (its settings = OUT/hook.json)
    shutil.copy(out / "mods-enabled" / "python3", raddb / "mods-available" / "python3")
    (raddb / "mods-enabled" / "python3").symlink_to("../mods-available/python3")
    # 6. the eap module: trustport's tls-config, anchors and the empty ca_path in OUT/certs; check-eap-tls
    rendered_eap = (out / "mods-enabled" / "eap").read_text()
    start, end = _section(rendered_eap, "\ttls-config tls-common {")
    tls_common = rendered_eap[start:end].replace("${certdir}", str(out / "certs"))
    eap = raddb / "mods-available" / "eap"
    text = _replace_section(eap.read_text(), "\ttls-config tls-common {", tls_common)
    text = _append_to_section(text, "\ttls {", "\t\tvirtual_server = check-eap-tls\n")
    eap.write_text(text)
    # 7. the check-eap-tls site, as rendered (replaces Debian's example of the same name)
    shutil.copy(out / "sites-enabled" / "check-eap-tls", raddb / "sites-available" / "check-eap-tls")
    (raddb / "sites-enabled" / "check-eap-tls").symlink_to("../sites-available/check-eap-tls")
    # 8. the default site: python3 in post-auth, after eap in Post-Auth-Type REJECT, and in accounting
    site = raddb / "sites-available" / "default"
    text = _insert_before(site.read_text(), "post-auth {", "\tPost-Auth-Type REJECT {", "\tpython3\n")
    text = _append_to_section(text, "\tPost-Auth-Type REJECT {", "\t\tpython3\n")
    text = _insert_before(text, "accounting {", "attr_filter.accounting_response", "\tpython3\n")
    site.write_text(text)
    # 9. the dictionary entries and the clients (Debian's client localhost is 127.0.0.1, as the lab's NAS)
    with (raddb / "dictionary").open("a") as dictionary:
        dictionary.write("".join(line for line in (out / "dictionary").read_text().splitlines(keepends=True)
                                 if line.startswith("ATTRIBUTE")))
    clients = raddb / "clients.conf"
    clients.write_text(_replace_section(clients.read_text(), "client localhost {", "")
                       + "\n" + (out / "clients.conf").read_text())
    # like everything else in /etc/freeradius/3.0
    for path in (eap, site, clients, raddb / "dictionary", raddb / "mods-available" / "python3",
                 raddb / "sites-available" / "check-eap-tls"):
        shutil.chown(path, USER, USER)
        os.chmod(path, 0o640)


def _test_only(raddb: Path, var: Path, auth_port: int, acct_port: int) -> None:
    """What a test must change and a deployment does not: paths into the test's directory, loopback ports."""
    conf = raddb / "radiusd.conf"
    text = conf.read_text()
    for key, value in (("raddbdir", raddb), ("logdir", var / "log"), ("run_dir", var / "run")):
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    conf.write_text(text)
    for directory in ("log", "run"):
        (var / directory).mkdir(parents=True)
        shutil.chown(var / directory, USER, USER)
    site = raddb / "sites-available" / "default"
    text = site.read_text()
    while re.search(r"(?m)^listen \{", text):
        text = _replace_section(text, "listen {", "")
    listeners = "".join(f"listen {{\n\ttype = {kind}\n\tipaddr = 127.0.0.1\n\tport = {port}\n}}\n"
                        for kind, port in (("auth", auth_port), ("acct", acct_port)))
    site.write_text(text.replace("server default {\n", "server default {\n" + listeners, 1))
    inner = raddb / "sites-available" / "inner-tunnel"
    inner.write_text(inner.read_text().replace("port = 18120", f"port = {free_port()}"))


def _radclient(port: int, secret: str, pairs: dict[str, str]) -> str:
    binary = require_tool("radclient", "freeradius-utils")
    body = "\n".join(f'{name} = "{value}"' for name, value in pairs.items()) + "\n"
    proc = subprocess.run([binary, "-x", "-r", "2", "-t", "3", f"127.0.0.1:{port}", "acct", secret], input=body,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and "Accounting-Response" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


SESSIONS = """
import json, sys
from pathlib import Path
import sqlalchemy as sa
from trustport.settings.config import load_config
from trustport.store.schema import sessions
from trustport.store.sql import SqlDeviceStore
store = SqlDeviceStore(load_config(Path(sys.argv[1]), check_files=False).database_url())
with store.transaction("reading sessions") as conn:
    rows = conn.execute(sa.select(sessions).order_by(sessions.c.id)).mappings().all()
print(json.dumps([{k: None if v is None else str(v) for k, v in r.items()} for r in rows]))
store.close()
"""


def _sessions(config: Path, install: Install) -> list[dict[str, str | None]]:
    """Read as freerad: a root-owned registry-wal/-shm would lock radiusd out of the registry."""
    import json

    proc = _as(USER, str(install.python), "-c", SESSIONS, str(config), env=install.env)
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, str | None]] = json.loads(proc.stdout)
    return rows


def test_merge_into_debian_etc_freeradius(work: Path, install: Install) -> None:
    etc, var_lib = work / "etc-trustport", work / "var-lib-trustport"
    etc.mkdir()
    registry = var_lib / "registry.sqlite"
    config = _lab_config(etc, registry)
    out = etc / "raddb"

    # before the ownership steps: render refuses, naming every problem and its fix (not -XC OK, then rejects)
    var_lib.mkdir()
    code, output = _render(config, out)
    assert code == 1, output
    key = etc / "pki" / "server.key"
    assert (f"server key {key} is not readable by user freerad (mode 0600 root:root): "
            f"chown root:freerad {key} && chmod 0640 {key}") in output
    assert (f"registry {registry} does not exist: create it as freerad: "
            "runuser -u freerad -- trustport db init") in output
    assert f"registry directory {var_lib} is not writable by user freerad" in output
    shutil.rmtree(var_lib)

    # 1.-2. file ownership and modes, the registry created by freerad
    subprocess.run(["chown", "-R", "root:freerad", str(etc)], check=True)
    subprocess.run(["chmod", "-R", "u=rwX,g=rX,o=", str(etc)], check=True)
    subprocess.run(["install", "-d", "-o", USER, "-g", USER, "-m", "0750", str(var_lib)], check=True)
    init = _as(USER, *_trustport(install, "db", "init", "--config", str(config)), env=install.env)
    assert init.returncode == 0, init.stdout + init.stderr
    cert_path = etc / "pki" / f"{DEVICE}.pem"
    added = _as(USER, *_trustport(install, "devices", "add", "--cert", str(cert_path), "--segment", "production",
                                  "--config", str(config)), env=install.env)
    assert added.returncode == 0, added.stdout + added.stderr

    # 3.-4. render: the permission check as freerad and freeradius -XC pass
    code, output = _render(config, out)
    assert code == 0, output
    assert "user freerad can read and write what radiusd needs" in output

    # 5.-10. the merge, on a copy of Debian's /etc/freeradius/3.0 (cp -a keeps its freerad ownership)
    raddb = work / "freeradius"
    subprocess.run(["cp", "-a", str(DEBIAN_RADDB), str(raddb)], check=True)
    _merge(raddb, out)
    settings = yaml.safe_load(config.read_text())
    auth_port, acct_port = settings["radius"]["auth_port"], settings["radius"]["acct_port"]
    secret = (etc / "radius-secret").read_text().strip()
    _test_only(raddb, work / "var", auth_port, acct_port)
    assert "user = freerad" in (raddb / "radiusd.conf").read_text()

    server = RadiusServer(raddb, work / "radiusd.log")
    server.check()  # 11. freeradius -XC
    with server:
        log = (work / "radiusd.log").read_text()
        assert "is healthy" in log, log[-3000:]
        # 11. a real authentication through Debian's default site
        eapol = write_eapol_conf(work / "eapol.conf", identity=f"{DEVICE.lower()}.devices.example",
                                 ca_cert=etc / "pki" / "server-ca.pem", client_cert=cert_path,
                                 private_key=etc / "pki" / f"{DEVICE}.key")
        result = run_eapol(eapol, port=auth_port, secret=secret, mac=MAC, nas_port=7)
        assert result.code == "Access-Accept", result.output[-3000:] + (work / "radiusd.log").read_text()[-4000:]
        assert result.vlan == PRODUCTION_VLAN
        nas = {"NAS-IP-Address": "127.0.0.1", "Calling-Station-Id": MAC.replace(":", "-"), "NAS-Port": "7",
               "Acct-Session-Id": "deploy-1", "User-Name": f"{DEVICE.lower()}.devices.example"}
        _radclient(acct_port, secret, {**nas, "Acct-Status-Type": "Start"})
        [opened] = [s for s in _sessions(config, install) if s["active"] == "True"]
        assert opened["acct_session_id"] == "deploy-1" and opened["vlan"] == str(PRODUCTION_VLAN)
        assert opened["calling_station_id"] == "02-00-00-00-00-01" and opened["device_id"] is not None
        _radclient(acct_port, secret, {**nas, "Acct-Status-Type": "Stop", "Acct-Session-Time": "60"})
        [closed] = [s for s in _sessions(config, install) if s["id"] == opened["id"]]
        assert closed["active"] == "False" and closed["stopped_at"] is not None
    for leftover in var_lib.iterdir():  # nothing in the registry's directory was created as root
        assert leftover.stat().st_uid != 0, leftover
