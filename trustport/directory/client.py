"""The directory adapter: ldap3 over LDAPS or StartTLS, certificate always checked, paged searches, timeouts.

Every ldap3 failure becomes one ``DirectoryError`` subclass with a message an engineer can act on; the bind
password is never in a message, a log line or a repr (ldap3's own logging stays off). Values are read raw (bytes):
``policy.directory.read_entry`` decides what they mean, so nothing the server sends is interpreted on the way.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from policy.errors import DirectoryError
from trustport.settings.directory import DirectoryConfig

RawEntry = tuple[str, Mapping[str, Sequence[bytes]]]


class DirectoryUnreachable(DirectoryError):
    """No connection, or no answer within the timeout."""


class DirectoryTlsError(DirectoryError):
    """The server's certificate is not trusted by ``directory.ca_file``, or TLS could not be set up."""


class DirectoryAuthError(DirectoryError):
    """The bind DN / password were refused."""


class DirectorySearchError(DirectoryError):
    """The search itself failed (no such base DN, a server limit, an invalid filter)."""


class LdapDirectory:
    def __init__(self, config: DirectoryConfig, ca_file: Path) -> None:
        self.config = config
        self.ca_file = ca_file
        parts = urlsplit(config.url)
        self.host = parts.hostname or ""
        self.use_ssl = parts.scheme == "ldaps"
        self.port = parts.port or (636 if self.use_ssl else 389)

    def __repr__(self) -> str:
        return f"LdapDirectory({self.config.url!r}, bind_dn={self.config.bind_dn!r})"

    @property
    def where(self) -> str:
        return f"directory {self.config.name} ({self.config.url})"

    def _tls(self) -> ldap3.Tls:
        if not self.ca_file.is_file():
            raise DirectoryTlsError(f"{self.where}: CA file {self.ca_file} does not exist; trustport never accepts "
                                    "an unchecked server certificate")
        try:
            return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file),
                             version=ssl.PROTOCOL_TLS_CLIENT)
        except (ldap_errors.LDAPException, ssl.SSLError, OSError) as exc:
            raise DirectoryTlsError(f"{self.where}: cannot use CA file {self.ca_file}: {exc}") from None

    def connect(self) -> ldap3.Connection:
        """A bound, read-only connection; raises a ``DirectoryError`` naming what failed."""
        timeout = self.config.timeout_seconds
        server = ldap3.Server(self.host, port=self.port, use_ssl=self.use_ssl, tls=self._tls(),
                              get_info=ldap3.NONE, connect_timeout=timeout)
        conn = ldap3.Connection(server, user=self.config.bind_dn,
                                password=self.config.bind_password.get_secret_value(), auto_bind=ldap3.AUTO_BIND_NONE,
                                read_only=True, raise_exceptions=True,
                                receive_timeout=max(1, math.ceil(timeout)),  # ldap3 packs it as an integer
                                client_strategy=ldap3.SYNC, check_names=False, auto_referrals=False)
        try:
            conn.open()
            if self.config.start_tls:
                conn.start_tls()
            conn.bind()
        except Exception as exc:  # ldap3 raises many types; _error sorts them
            _close(conn)
            raise self._error(exc, "connecting") from None
        return conn

    def _error(self, exc: BaseException, doing: str) -> BaseException:
        text = str(exc)
        if isinstance(exc, ldap_errors.LDAPInvalidCredentialsResult):
            return DirectoryAuthError(f"{self.where}: bind as {self.config.bind_dn!r} refused: invalid credentials "
                                      "(check directory.bind_dn and bind_password; the password is not shown)")
        if isinstance(exc, ldap_errors.LDAPBindError | ldap_errors.LDAPUnwillingToPerformResult
                      | ldap_errors.LDAPInappropriateAuthenticationResult):
            return DirectoryAuthError(f"{self.where}: bind as {self.config.bind_dn!r} refused: {text}")
        if "certificate" in text.lower() or isinstance(exc, ldap_errors.LDAPStartTLSError | ssl.SSLError):
            return DirectoryTlsError(f"{self.where}: TLS failed while {doing}: {text} -- the server's certificate "
                                     f"must be issued by {self.ca_file} and name the host {self.host!r}")
        if isinstance(exc, ldap_errors.LDAPNoSuchObjectResult):
            return DirectorySearchError(f"{self.where}: base DN {self.config.base_dn!r} does not exist")
        if isinstance(exc, ldap_errors.LDAPSizeLimitExceededResult | ldap_errors.LDAPAdminLimitExceededResult):
            return DirectorySearchError(f"{self.where}: the server's size limit was reached ({text}); lower "
                                        "directory.page_size or raise the server's paged-search limit; the last "
                                        "synced data stays in force")
        if isinstance(exc, ldap_errors.LDAPOperationResult):
            return DirectorySearchError(f"{self.where}: {doing} failed: {text}")
        if isinstance(exc, ldap_errors.LDAPException | OSError | TimeoutError):
            return DirectoryUnreachable(f"{self.where}: no connection or no answer within "
                                        f"{self.config.timeout_seconds:g} s while {doing}: {text}")
        return exc  # not an LDAP failure: a bug, let it show

    def entries(self, progress: Callable[[int], object] | None = None) -> Iterator[RawEntry]:
        """Every entry under the base DN matching the filter, page by page (``page_size``)."""
        conn = self.connect()
        attributes = self.config.attribute_map().names()
        scope = ldap3.SUBTREE if self.config.scope == "subtree" else ldap3.LEVEL
        try:
            pages = conn.extend.standard.paged_search(
                self.config.base_dn, self.config.search_filter(), scope, attributes=attributes,
                paged_size=self.config.page_size, generator=True)
            count = 0
            for item in pages:
                if item.get("type") != "searchResEntry":
                    continue  # referrals and continuation references are not followed
                count += 1
                if progress is not None and count % self.config.page_size == 0:
                    progress(self.config.page_size)
                yield str(item["dn"]), {str(k): [bytes(v) for v in vs] for k, vs in item["raw_attributes"].items()}
            if progress is not None and count % self.config.page_size:
                progress(count % self.config.page_size)
        except DirectoryError:
            raise
        except Exception as exc:  # ldap3 raises many types; _error sorts them
            raise self._error(exc, "searching") from None
        finally:
            _close(conn)

    def lookup(self, serial: str) -> list[RawEntry]:
        """The entries whose serial attribute equals ``serial`` exactly; filter metacharacters in it are escaped
        (RFC 4515), so ``*`` or ``)(`` in a serial are characters, never a wider search."""
        mapping = self.config.attribute_map()
        query = f"(&{self.config.search_filter()}({mapping.serial_number}={escape_filter_chars(serial)}))"
        conn = self.connect()
        try:
            conn.search(self.config.base_dn, query,
                        ldap3.SUBTREE if self.config.scope == "subtree" else ldap3.LEVEL,
                        attributes=mapping.names(), size_limit=10)
            return [(str(e["dn"]), {str(k): [bytes(v) for v in vs] for k, vs in e["raw_attributes"].items()})
                    for e in conn.response or () if e.get("type") == "searchResEntry"]
        except Exception as exc:  # ldap3 raises many types; _error sorts them
            raise self._error(exc, "looking up a serial") from None
        finally:
            _close(conn)


def _close(conn: ldap3.Connection) -> None:
    """Unbind, ignoring a socket already broken (a failed TLS handshake leaves one)."""
    try:
        if not conn.closed:
            conn.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass
