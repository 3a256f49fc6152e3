"""A throw-away OpenLDAP ``slapd`` for tests and the lab.

Everything lives in one private directory: a test CA and a server certificate (made with ``cryptography``),
a slapd.conf (``slapd -f``, not cn=config) with core/cosine/inetorgperson/nis, trustport's own schema and
optionally Microsoft AD's ``msuser.schema``, and an mdb database filled by ``slapadd`` before the start.
slapd listens on ``ldap://127.0.0.1:<port>`` (StartTLS) and ``ldaps://127.0.0.1:<tls_port>``, ports chosen at
run time, and runs in the foreground (``-d``) as a child process, logging to ``slapd.log`` in the directory.

A service account ``cn=trustport,ou=services,<suffix>`` may read ``ou=devices``; anonymous may only bind;
the admin (rootdn) writes everything. Like a real server, an unpaged search stops at 1000 entries
(sizeLimitExceeded) while a paged search returns everything.

``python -m trustport_lab.slapd --entries 10000`` starts one with generated devices for manual testing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType

import ldap3  # type: ignore[import-untyped, unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")  # msuser.schema needs nis (homeDirectory)
AD_SCHEMA = "msuser"
SIZE_LIMIT = 1000
TEST_ISSUER = "/C=US/O=Acme/CN=Acme IDevID CA"


class SlapdUnavailable(RuntimeError):
    """slapd is not installed, or it could not be started."""


def find_binaries() -> tuple[str, str]:
    """Paths of ``slapd`` and ``slapadd`` (``/usr/sbin`` is often not on a normal user's PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    slapd, slapadd = shutil.which("slapd", path=search), shutil.which("slapadd", path=search)
    if slapd is None or slapadd is None or not (MODULE_DIR / "back_mdb.so").exists():
        raise SlapdUnavailable(
            "OpenLDAP server not found (slapd, slapadd and /usr/lib/ldap/back_mdb.so); "
            "install it: apt-get install slapd ldap-utils"
        )
    return slapd, slapadd


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def trustport_schema_path() -> Path:
    """trustport.schema as shipped in the ``trustport.directory`` package."""
    ref = resources.files("trustport.directory").joinpath("schema/trustport.schema")
    path = Path(str(ref))
    if not path.is_file():
        raise SlapdUnavailable(f"trustport LDAP schema not found at {path}")
    return path


def ssha(password: str) -> str:
    """``{SSHA}`` hash of ``password`` for ``userPassword`` / ``rootpw``."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


# --- LDIF -------------------------------------------------------------------------------------------------

_UNSAFE_FIRST = frozenset("\0\n\r :<")


def _needs_base64(value: str) -> bool:
    """RFC 2849 SAFE-STRING check, plus a trailing space (tools may strip it)."""
    if not value:
        return False
    if value[0] in _UNSAFE_FIRST or value[-1] == " ":
        return True
    return any(ord(c) < 0x20 or ord(c) > 0x7E for c in value)


def ldif_line(attr: str, value: str) -> str:
    """``attr: value``, or ``attr:: base64`` when the value is not LDIF-safe."""
    if _needs_base64(value):
        return f"{attr}:: {base64.b64encode(value.encode()).decode()}"
    return f"{attr}: {value}"


def escape_rdn_value(value: str) -> str:
    """Escape a value for use in a DN (RFC 4514)."""
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (i == 0 and ch in " #") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0" or ord(ch) < 0x20:
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


AttrValues = str | Sequence[str]


def _entry(dn: str, object_classes: Sequence[str], attrs: Mapping[str, AttrValues]) -> str:
    lines = [ldif_line("dn", dn)]
    classes = list(object_classes)
    body: list[str] = []
    for attr, values in attrs.items():
        for value in [values] if isinstance(values, str) else values:
            if attr.lower() == "objectclass":
                if value not in classes:
                    classes.append(value)
            else:
                body.append(ldif_line(attr, value))
    lines += [ldif_line("objectClass", oc) for oc in classes]
    return "\n".join(lines + body) + "\n"


def device_ldif(devices: Iterable[Mapping[str, AttrValues]], devices_dn: str) -> str:
    """LDIF for device entries ``cn=<cn>,<devices_dn>`` (objectClass device + trustportDevice)."""
    entries = []
    for device in devices:
        cn = device["cn"]
        if not isinstance(cn, str):
            raise ValueError(f"cn must be a single string, got {cn!r}")
        entries.append(_entry(f"cn={escape_rdn_value(cn)},{devices_dn}", ["device", "trustportDevice"], device))
    return "\n".join(entries)


def ad_computer_ldif(
    computers: Iterable[Mapping[str, AttrValues]], base_dn: str, *, suffix: str = "dc=example,dc=org"
) -> str:
    """LDIF for AD-style computer entries ``cn=<cn>,<base_dn>``; needs ``ad_schema=True``.

    Dicts carry ``cn`` and any of ``serialNumber``, ``userAccountControl`` (4096 enabled, 4098 disabled),
    ``managedBy``, ``location``, ``description``. The attributes AD itself maintains (``instanceType``,
    ``objectCategory``, ``sAMAccountName``, ...) are filled in; ``extensibleObject`` allows ``serialNumber``,
    which msuser.schema's ``computer`` does not list.
    """
    entries = []
    for computer in computers:
        cn = computer["cn"]
        if not isinstance(cn, str):
            raise ValueError(f"cn must be a single string, got {cn!r}")
        attrs: dict[str, AttrValues] = {
            "sn": cn,
            "instanceType": "4",
            "nTSecurityDescriptor": "\x01\x00\x04\x80",
            "objectCategory": f"CN=Computer,CN=Schema,CN=Configuration,{suffix}",
            "sAMAccountName": f"{cn.upper()}$",
            "userAccountControl": "4096",
        }
        attrs.update(computer)
        classes = ["top", "person", "organizationalPerson", "user", "computer", "extensibleObject"]
        entries.append(_entry(f"cn={escape_rdn_value(cn)},{base_dn}", classes, attrs))
    return "\n".join(entries)


def generated_devices(count: int, *, start: int = 1) -> list[dict[str, str]]:
    """``count`` plausible devices (cn dev-00001, serial SN-00001, ...), for scale tests and the lab."""
    classes = ("camera", "badge-reader", "hvac", "printer")
    return [
        {
            "cn": f"dev-{i:05d}",
            "serialNumber": f"SN-{i:05d}",
            "trustportIssuer": TEST_ISSUER,
            "trustportApproved": "TRUE" if i % 10 else "FALSE",
            "trustportDeviceClass": classes[i % len(classes)],
            "trustportOwner": "facilities",
            "trustportSite": "hq",
            "trustportSegment": "cameras",
        }
        for i in range(start, start + count)
    ]


# --- TLS --------------------------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _make_ca(common_name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustport lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_tls_material(directory: Path) -> tuple[Path, Path, Path, Path]:
    """Test CA, server cert (SAN IP:127.0.0.1, DNS:localhost) and an unrelated CA; returns
    (ca_file, cert_file, key_file, wrong_ca_file)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _make_ca("trustport lab LDAP test CA", now)
    _, wrong_cert = _make_ca("unrelated CA", now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file = directory / "ca.pem", directory / "server.pem"
    key_file, wrong_ca_file = directory / "server.key", directory / "wrong-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    wrong_ca_file.write_bytes(wrong_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_file, key)
    return ca_file, cert_file, key_file, wrong_ca_file


# --- the server -------------------------------------------------------------------------------------------


def _log_tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@dataclass
class Slapd:
    """A slapd in ``workdir``; ``start()``/``stop()`` may be called repeatedly (same ports, same data)."""

    workdir: Path
    suffix: str
    port: int
    tls_port: int
    ca_file: Path
    wrong_ca_file: Path
    bind_dn: str
    bind_password: str
    admin_dn: str
    admin_password: str
    config_file: Path
    log_file: Path
    log_level: str = "none"
    start_timeout_s: float = 30.0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def devices_dn(self) -> str:
        return f"ou=devices,{self.suffix}"

    @property
    def services_dn(self) -> str:
        return f"ou=services,{self.suffix}"

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def tls(self, ca_file: Path | None = None) -> ldap3.Tls:
        """ldap3 TLS settings that verify the server against ``ca_file`` (default: the right CA)."""
        return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file or self.ca_file))

    def server(self, *, ldaps: bool = True, ca_file: Path | None = None) -> ldap3.Server:
        url = self.ldaps_url if ldaps else self.ldap_url
        return ldap3.Server(url, use_ssl=ldaps, tls=self.tls(ca_file), get_info=ldap3.NONE, connect_timeout=5)

    def admin(self, *, raise_exceptions: bool = True) -> ldap3.Connection:
        """An ldap3 connection bound as the admin (rootdn) over LDAPS."""
        return ldap3.Connection(
            self.server(), user=self.admin_dn, password=self.admin_password, auto_bind=True,
            raise_exceptions=raise_exceptions, receive_timeout=30,
        )  # fmt: skip

    def start(self) -> None:
        """Start slapd (no-op when running) and wait until both ports answer LDAP."""
        if self.running:
            return
        slapd, _ = find_binaries()
        urls = f"{self.ldap_url}/ {self.ldaps_url}/"
        with self.log_file.open("ab") as log:
            log.write(f"--- starting slapd on {urls}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [slapd, "-d", self.log_level, "-f", str(self.config_file), "-h", urls],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last_error = ""
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise SlapdUnavailable(
                    f"slapd exited with code {process.returncode} during start-up; log tail:\n"
                    f"{_log_tail(self.log_file)}"
                )
            try:
                for ldaps in (False, True):
                    conn = ldap3.Connection(self.server(ldaps=ldaps), receive_timeout=5)
                    try:
                        if not conn.bind():  # anonymous bind: a real LDAP round trip
                            raise SlapdUnavailable(f"anonymous bind failed: {conn.result}")
                    finally:
                        conn.unbind()
                return
            except (ldap3.core.exceptions.LDAPException, OSError) as e:
                last_error = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                raise SlapdUnavailable(
                    f"slapd did not answer on {self.ldap_url} and {self.ldaps_url} within "
                    f"{self.start_timeout_s:.0f} s (last error: {last_error}); log tail:\n{_log_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate slapd and wait for it (killed after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _config(
    *, workdir: Path, suffix: str, admin_dn: str, admin_password: str, bind_dn: str, ad_schema: bool,
    ca_file: Path, cert_file: Path, key_file: Path,
) -> str:  # fmt: skip
    schemas = [SCHEMA_DIR / f"{name}.schema" for name in (*BASE_SCHEMAS, *([AD_SCHEMA] if ad_schema else []))]
    for path in schemas:
        if not path.is_file():
            raise SlapdUnavailable(f"schema file {path} missing; install it: apt-get install slapd")
    schemas.append(trustport_schema_path())
    devices_dn = f"ou=devices,{suffix}"
    includes = "\n".join(f'include "{p}"' for p in schemas)
    return f"""# generated by trustport_lab.slapd
{includes}

pidfile "{workdir / "slapd.pid"}"
argsfile "{workdir / "slapd.args"}"
modulepath {MODULE_DIR}
moduleload back_mdb

TLSCACertificateFile "{ca_file}"
TLSCertificateFile "{cert_file}"
TLSCertificateKeyFile "{key_file}"
TLSVerifyClient never

# the root DSE (supportedExtension: StartTLS, paged results) and the schema are public, as on real servers
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 4294967296
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {ssha(admin_password)}
directory "{workdir / "db"}"
index objectClass eq
index cn,serialNumber eq,sub
index trustportCertFingerprint eq
# like a real server: 1000 entries per unpaged search, paged searches may return everything
sizelimit size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited

access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.subtree="{devices_dn}"
    by dn.exact="{bind_dn}" read
    by * none
access to *
    by * none
"""


def _base_ldif(suffix: str, bind_dn: str, bind_password: str) -> str:
    first = suffix.split(",", 1)[0]
    attr, _, value = first.partition("=")
    if attr.strip().lower() == "dc":
        base = _entry(suffix, ["top", "dcObject", "organization"], {"dc": value, "o": value})
    elif attr.strip().lower() == "o":
        base = _entry(suffix, ["top", "organization"], {"o": value})
    else:
        raise ValueError(f"suffix must start with dc= or o=, got {suffix!r}")
    return "\n".join([
        base,
        _entry(f"ou=devices,{suffix}", ["top", "organizationalUnit"], {"ou": "devices"}),
        _entry(f"ou=services,{suffix}", ["top", "organizationalUnit"], {"ou": "services"}),
        _entry(bind_dn, ["top", "applicationProcess", "simpleSecurityObject"],
               {"cn": "trustport", "userPassword": ssha(bind_password), "description": "trustport service account"}),
    ])  # fmt: skip


def create_slapd(
    workdir: Path, *, ldif: str = "", ad_schema: bool = False, suffix: str = "dc=example,dc=org",
    log_level: str = "none", start_timeout_s: float = 30.0,
) -> Slapd:  # fmt: skip
    """Write TLS material, config and database into ``workdir`` (loaded with slapadd); does not start it."""
    _, slapadd = find_binaries()
    workdir = workdir.resolve()  # slapadd and slapd run in it: a relative path would be taken twice
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(mode=0o700, exist_ok=True)
    ca_file, cert_file, key_file, wrong_ca_file = write_tls_material(workdir)
    admin_dn, bind_dn = f"cn=admin,{suffix}", f"cn=trustport,ou=services,{suffix}"
    admin_password, bind_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    config_file = workdir / "slapd.conf"
    config_file.write_text(
        _config(
            workdir=workdir,
            suffix=suffix,
            admin_dn=admin_dn,
            admin_password=admin_password,
            bind_dn=bind_dn,
            ad_schema=ad_schema,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
    )
    config_file.chmod(0o600)
    data = workdir / "initial.ldif"
    data.write_text(_base_ldif(suffix, bind_dn, bind_password) + "\n" + ldif.strip("\n") + "\n", encoding="utf-8")
    result = subprocess.run(
        [slapadd, "-q", "-f", str(config_file), "-l", str(data)],
        cwd=workdir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SlapdUnavailable(f"slapadd failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}")
    return Slapd(
        workdir=workdir, suffix=suffix, port=0, tls_port=0, ca_file=ca_file, wrong_ca_file=wrong_ca_file,
        bind_dn=bind_dn, bind_password=bind_password, admin_dn=admin_dn, admin_password=admin_password,
        config_file=config_file, log_file=workdir / "slapd.log", log_level=log_level,
        start_timeout_s=start_timeout_s,
    )  # fmt: skip


@contextlib.contextmanager
def running_slapd(
    workdir: Path | None = None, *, ldif: str = "", ad_schema: bool = False, suffix: str = "dc=example,dc=org",
    log_level: str = "none",
) -> Iterator[Slapd]:  # fmt: skip
    """Create and start a slapd, yield it, stop it; a temporary ``workdir`` (the default) is deleted after."""
    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="trustport-slapd-")) if workdir is None else workdir
    server: Slapd | None = None
    try:
        server = create_slapd(base, ldif=ldif, ad_schema=ad_schema, suffix=suffix, log_level=log_level)
        for attempt in range(3):  # a port picked free may be taken before slapd binds it
            server.port, server.tls_port = free_port(), free_port()
            try:
                server.start()
                break
            except SlapdUnavailable as e:
                if attempt == 2 or "Address already in use" not in str(e):
                    raise
        yield server
    finally:
        if server is not None:
            server.stop()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a throw-away OpenLDAP slapd with generated trustport devices.")
    parser.add_argument("--entries", type=int, default=100, help="number of generated devices (default 100)")
    parser.add_argument("--suffix", default="dc=example,dc=org")
    parser.add_argument("--ad-schema", action="store_true", help="also load Microsoft AD's msuser.schema")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary directory)")
    parser.add_argument("--log-level", default="none", help="slapd -d level, e.g. stats (default none)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` cleans up like Ctrl-C
    devices_dn = f"ou=devices,{args.suffix}"
    started = time.monotonic()
    with running_slapd(
        args.workdir, ldif=device_ldif(generated_devices(args.entries), devices_dn), ad_schema=args.ad_schema,
        suffix=args.suffix, log_level=args.log_level,
    ) as server:  # fmt: skip
        print(f"slapd ready in {time.monotonic() - started:.1f} s with {args.entries} devices under {devices_dn}")
        print(f"  ldap_url      {server.ldap_url}   (StartTLS)")
        print(f"  ldaps_url     {server.ldaps_url}")
        print(f"  ca_file       {server.ca_file}")
        print(f"  bind_dn       {server.bind_dn}")
        print(f"  bind_password {server.bind_password}")
        print(f"  admin_dn      {server.admin_dn}")
        print(f"  admin_pass    {server.admin_password}")
        print(f"  workdir       {server.workdir}  (log: {server.log_file.name})")
        print(f"try: LDAPTLS_CACERT={server.ca_file} ldapsearch -H {server.ldaps_url} -D '{server.bind_dn}' "
              f"-w '{server.bind_password}' -b '{devices_dn}' -E pr=500/noprompt '(cn=dev-00001)'")  # fmt: skip
        print("Ctrl-C to stop", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping slapd", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
