"""The enrolment authority behind EST (RFC 7030): who gets an LDevID from the owner CA, and the registry moves.

A device is whoever its TLS client certificate says, judged by the RADIUS path itself (``pem_facts`` +
``Authorizer.evaluate``: chain, anchor, validity, CRL, deny list, identity binding, registry state, policy), so a
certificate RADIUS would reject cannot enrol. ``simpleenroll`` takes an IDevID, ``simplereenroll`` the device's
current LDevID. The LDevID's names come from that authenticated certificate (``identity_from_certificate``),
never from the CSR, which only proves possession of the new key.

Order of writes (the owner CA and the registry cannot share one transaction): the CA issues first; then ONE
registry transaction moves the device's identity binding to the new certificate (its registry key becomes the owner
CA's issuer + serial, kind ldevid), writes the audit event and, on renewal, puts the old certificate on the local
deny list; only then is the old certificate revoked at the CA. If the binding fails, the new certificate is revoked
again, so no unbound LDevID stays valid; if revoking the old one fails, the deny list already refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from sqlalchemy.engine import Connection

from policy.attestation import Tier
from policy.certificates import check_public_key
from policy.decide import device_view
from policy.errors import IdentityError, IssuanceError, StoreError, TrustportError
from policy.issuance import IssuanceIdentity, IssuedCertificate, identity_from_certificate
from policy.lifecycle import TransitionRefused
from policy.model import CertificateFacts, CertKind, Check, DeviceKey, DeviceRecord, LifecycleState, Outcome
from policy.x509facts import facts_from_certificate, key_info, oneline_dn
from trustport.services.authorize import Authorizer, AuthResult, device_label
from trustport.services.chain import pem_facts
from trustport.services.lifecycle import LifecycleService
from trustport.settings.enrollment import AutoApprove, EnrollmentConfig
from trustport.store.lifecycle import BindingConflict, LifecycleEvent, SqlLifecycleStore
from trustport.store.sql import SqlDeviceStore

log = logging.getLogger(__name__)
ACTOR = "est"
_REASON_CHARS = 2000


class OwnerAuthority(Protocol):
    """What enrolment needs of the owner CA (``trustport.services.ca.OwnerCA``)."""

    def certificates(self) -> Sequence[x509.Certificate]: ...

    def issue(self, csr: x509.CertificateSigningRequest, identity: IssuanceIdentity, *, now: datetime,
              replaces: str | None = None, actor: str,
              bind: Callable[[Connection, IssuedCertificate], None] | None = None) -> IssuedCertificate: ...

    def revoke(self, cert_serial: str, *, reason: str, now: datetime, actor: str) -> object: ...

    def publish_crl(self, now: datetime) -> object: ...


@dataclass(frozen=True)
class EnrollmentAnswer:
    """What to answer: 200 with ``issued``, 202 with ``retry_after`` (pending), or a refusal (4xx/503) whose
    ``message`` says why and what to do."""

    status: int
    message: str
    issued: IssuedCertificate | None = None
    retry_after: int | None = None
    device_id: int | None = None


def _failed(checks: Sequence[Check]) -> str:
    return "; ".join(f"{c.name}: {c.detail}" for c in checks if c.ok is False) or "refused"


class _Refused(Exception):
    def __init__(self, status: int, message: str, device: DeviceRecord | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.device = device


class EnrollmentService:
    def __init__(self, settings: EnrollmentConfig, authorizer: Authorizer, store: SqlDeviceStore,
                 lifecycle: LifecycleService, ca: OwnerAuthority) -> None:
        self.settings = settings
        self.authorizer = authorizer
        self.store = store
        self.lifecycle = lifecycle
        self.ca = ca
        self.audit = SqlLifecycleStore(store)

    def ca_certificates(self) -> list[x509.Certificate]:
        return list(self.ca.certificates())

    # -- the two enrol operations ------------------------------------------------------------------------------

    def enroll(self, peer_der: bytes | None, csr: x509.CertificateSigningRequest, now: datetime, *,
               renew: bool = False) -> EnrollmentAnswer:
        """``simpleenroll`` (``renew=False``, authenticated with the IDevID) or ``simplereenroll`` (the LDevID)."""
        operation = "re-enrolment" if renew else "enrolment"
        try:
            return self._enroll(peer_der, csr, now, renew)
        except _Refused as refused:
            self._audit_refusal(refused.device, now, f"{operation} refused: {refused}")
            log.info("EST %s refused (%d): %s", operation, refused.status, refused)
            return EnrollmentAnswer(refused.status, str(refused),
                                    device_id=refused.device.id if refused.device else None)
        except StoreError as exc:
            log.error("EST %s: registry unavailable: %s", operation, exc)
            return EnrollmentAnswer(503, "the device registry is unavailable; try again later", retry_after=30)

    def _enroll(self, peer_der: bytes | None, csr: x509.CertificateSigningRequest, now: datetime,
                renew: bool) -> EnrollmentAnswer:
        expected = CertKind.LDEVID if renew else CertKind.IDEVID
        if peer_der is None:
            raise _Refused(403, f"a TLS client certificate is required: authenticate with the device's "
                                f"{expected.value.upper()}" + ("" if renew else " (802.1AR)"))
        leaf, facts, result = self._authenticate(peer_der, now)
        device = result.device
        if result.verdict.kind is not expected:
            other = "simplereenroll" if result.verdict.kind is CertKind.LDEVID else "simpleenroll"
            raise _Refused(403, f"this operation takes an {expected.value.upper()}, the client certificate is an "
                                f"{result.verdict.kind.value.upper() if result.verdict.kind else 'unknown kind'} "
                                f"(use {other})", device)
        if device is None:
            if renew:
                raise _Refused(403, f"{device_label(facts)} is not registered; enrol with the IDevID first")
            device = self._register(facts, result, now)
            if device is None:  # registered as pending just now: an operator or a rule has to approve it
                return self._pending(None, facts, now)
        if result.decision.outcome is Outcome.REJECT:
            raise _Refused(403, "refused as RADIUS would refuse it: " + "; ".join(result.decision.reasons), device)
        if device.state is LifecycleState.QUARANTINED:
            raise _Refused(403, f"device {device.id} is quarantined; an operator must release it first", device)
        if device.state is LifecycleState.DECOMMISSIONED:  # place() rejects it already; kept for clarity
            raise _Refused(403, f"device {device.id} is decommissioned", device)
        rule = None
        if device.state is LifecycleState.PENDING:
            rule = self.auto_approve_rule(facts, result, device, now)
            if rule is None:
                return self._pending(device, facts, now)
        self._check_attestation(result, device)
        if rule is not None:
            device = self._approve(device, rule, now)
        problem = _csr_problem(csr)
        if problem is not None:
            raise _Refused(400, problem, device)
        try:
            identity = identity_from_certificate(leaf)
        except IssuanceError as exc:
            raise _Refused(403, str(exc), device) from exc
        return self._issue(device, facts, csr, identity, now, renew)

    def _authenticate(self, peer_der: bytes, now: datetime) -> tuple[x509.Certificate, CertificateFacts,
                                                                         AuthResult]:
        """The client certificate judged exactly as RADIUS and ``trustport decide`` judge it."""
        try:
            leaf = x509.load_der_x509_certificate(peer_der)
            facts, chain = pem_facts(leaf, [], self.authorizer.trust, now)
        except IdentityError as exc:
            raise _Refused(403, f"the client certificate's names are refused: {exc}") from exc
        except ValueError as exc:
            raise _Refused(403, "the client certificate cannot be parsed") from exc
        result = self.authorizer.evaluate(facts, now, extra_checks=(chain,))
        if not result.verdict.valid:
            raise _Refused(403, "client certificate refused as RADIUS would refuse it: "
                                + _failed(result.verdict.checks), result.device)
        return leaf, facts, result

    def _register(self, facts: CertificateFacts, result: AuthResult, now: datetime) -> DeviceRecord | None:
        """An unknown genuine IDevID: pending, as RADIUS records it -- unless the device already has an LDevID (its
        registry key moved to the owner CA's issuer at enrolment). None: just registered as pending."""
        assert facts.device_serial
        assert result.verdict.kind is not None
        enrolled = self._enrolled_as(facts.device_serial)
        if enrolled is not None:
            raise _Refused(403, f"device {enrolled.id} ({facts.device_serial}) already has an LDevID from the owner "
                                "CA: re-enrol with it (simplereenroll); to enrol again with the IDevID, an operator "
                                "decommissions that registration first", enrolled)
        if result.decision.outcome is Outcome.REJECT or not result.decision.register_pending:
            raise _Refused(403, "refused as RADIUS would refuse it: " + "; ".join(result.decision.reasons))
        device = self.store.register_pending(DeviceKey(facts.issuer, facts.device_serial), facts,
                                             result.verdict.kind, now)
        self._event(device, now, "est-registered", "genuine IDevID of an unknown device asked for an LDevID: "
                                                   "registered as pending")
        rule = self.auto_approve_rule(facts, result, device, now)
        if rule is None:
            return None
        self._check_attestation(result, device)
        return self._approve(device, rule, now)

    def _enrolled_as(self, serial_number: str) -> DeviceRecord | None:
        for ca_cert in self.ca_certificates():
            try:
                record = self.store.find_device(DeviceKey(oneline_dn(ca_cert.subject), serial_number))
            except IdentityError:
                continue
            if record is not None:
                return record
        return None

    def _pending(self, device: DeviceRecord | None, facts: CertificateFacts, now: datetime) -> EnrollmentAnswer:
        ref = f"device {device.id}" if device else device_label(facts)
        return EnrollmentAnswer(202, f"{ref} is pending approval ('trustport devices onboard' or 'approve'); "
                                     f"ask again in {self.settings.retry_after_seconds} s",
                                retry_after=self.settings.retry_after_seconds,
                                device_id=device.id if device else None)

    # -- approval and attestation ------------------------------------------------------------------------------

    def auto_approve_rule(self, facts: CertificateFacts, result: AuthResult, device: DeviceRecord | None,
                          now: datetime) -> AutoApprove | None:
        """The first ``auto_approve`` rule the authenticated certificate (and attestation standing) matches."""
        if not self.settings.auto_approve:
            return None
        standing = result.attestation
        if standing is None and device is not None and self.authorizer.attestation is not None:
            standing = self.authorizer.attestation.standing(device, facts, now)
        view = device_view(facts, result.verdict, device, standing, None, None)
        for rule in self.settings.auto_approve:
            if all(c.matches(view.get(c.field)) for c in rule.match.conditions()):
                return rule
        return None

    def _check_attestation(self, result: AuthResult, device: DeviceRecord) -> None:
        if self.settings.require_attestation is None:
            return
        standing = result.attestation
        if standing is None or standing.tier is not Tier.AFFIRMING:
            label = standing.label if standing is not None else "missing"
            detail = standing.detail if standing is not None else (
                "attestation is not configured" if self.authorizer.attestation is None else "no result")
            raise _Refused(403, f"enrolment requires an affirming attestation result; device {device.id} is "
                                f"{label}: {detail}", device)

    def _approve(self, device: DeviceRecord, rule: AutoApprove, now: datetime) -> DeviceRecord:
        try:
            return self.lifecycle.act(device, "onboard", actor=ACTOR, reason=f"auto-approve rule {rule.name!r}",
                                      now=now).after
        except TransitionRefused as exc:
            raise _Refused(409, str(exc), device) from exc

    # -- issuing and moving the binding ------------------------------------------------------------------------

    def _issue(self, device: DeviceRecord, facts: CertificateFacts, csr: x509.CertificateSigningRequest,
               identity: IssuanceIdentity, now: datetime, renew: bool) -> EnrollmentAnswer:
        old = facts.cert_serial if renew else None
        action = "ldevid-renewed" if renew else "ldevid-enrolled"

        def reason_for(issued: IssuedCertificate) -> str:
            return (f"LDevID serial {issued.cert_serial} issued over EST (until {issued.not_after.isoformat()}), "
                    + (f"replaces LDevID {old}" if renew else f"authenticated by IDevID serial {facts.cert_serial}"))

        # an LDevID this CA issued is revoked by it (CRL); one from another LDevID anchor is deny-listed
        replaces = old if old and facts.issuer in {oneline_dn(c.subject) for c in self.ca.certificates()} else None

        def bind(conn: Connection, issued: IssuedCertificate) -> None:
            self._bind_in(conn, device, facts, facts_from_certificate(issued.certificate), now, action,
                          reason_for(issued), deny_old=renew and replaces is None)

        try:
            # one transaction: the issued record, the old LDevID revoked (and deny-listed) and the registry binding
            # moved to the new one; if anything fails nothing is written and the new certificate never leaves here
            issued = self.ca.issue(csr, identity, now=now, actor=ACTOR, replaces=replaces, bind=bind)
        except _Refused:
            raise
        except IssuanceError as exc:
            raise _Refused(400, str(exc), device) from exc
        except StoreError as exc:
            log.error("EST: the registry could not record the LDevID for device %s: %s", device.id, exc)
            raise _Refused(503, "the registry could not record the new certificate; nothing was issued; try again "
                                "later", device) from exc
        except TrustportError as exc:
            log.error("EST: the owner CA could not issue for device %s: %s", device.id, exc)
            raise _Refused(503, "the owner CA could not issue the certificate; try again later", device) from exc
        reason = reason_for(issued)
        log.info("EST %s: device %s %s", action, device.id, reason)
        return EnrollmentAnswer(200, reason, issued=issued, device_id=device.id)

    @staticmethod
    def _bind_in(conn: Connection, device: DeviceRecord, presented: CertificateFacts, new: CertificateFacts,
                 now: datetime, action: str, reason: str, *, deny_old: bool) -> None:
        """Inside the issuing transaction: the device row now names the new LDevID (issuer, kind, serial,
        fingerprint, key) and the audit event -- unless the device changed since it was authenticated (another
        enrolment, an operator): then ``_Refused`` rolls everything back. On renewal the owner CA revokes and
        deny-lists an old LDevID it issued in the same transaction; ``deny_old`` deny-lists one it did not. The
        transaction holds the registry write lock (``record_issued`` takes it first)."""
        try:
            SqlLifecycleStore.move_binding_in(conn, device, presented.cert_serial, new, CertKind.LDEVID, now)
        except BindingConflict as exc:
            raise _Refused(409, str(exc), device) from exc
        state = device.state.value
        SqlLifecycleStore.record_in(conn, LifecycleEvent(device.id, now, ACTOR, action, state, state,
                                                         reason[:_REASON_CHARS]))
        if deny_old:
            SqlLifecycleStore.deny_in(conn, presented.issuer, presented.cert_serial, device_id=device.id,
                                      time=now, actor=ACTOR, reason=f"superseded by LDevID {new.cert_serial}")

    # -- audit -------------------------------------------------------------------------------------------------

    def _event(self, device: DeviceRecord, now: datetime, action: str, reason: str) -> None:
        state = device.state.value
        self.audit.record(LifecycleEvent(device.id, now, ACTOR, action, state, state, reason[:_REASON_CHARS]))

    def _audit_refusal(self, device: DeviceRecord | None, now: datetime, reason: str) -> None:
        if device is None:
            return  # no registry entry to attach it to: the log line (and the device's TLS attempt) is all there is
        try:
            self._event(device, now, "est-refused", reason)
        except StoreError as exc:
            log.error("EST: could not audit a refusal for device %s: %s", device.id, exc)


def _csr_problem(csr: x509.CertificateSigningRequest) -> str | None:
    """Why the requested key is refused: the key policy authentication applies (the CA checks it again)."""
    try:
        check = check_public_key(key_info(csr.public_key()))
    except Exception as exc:  # an algorithm cryptography parses but cannot represent
        return f"the requested key cannot be read ({type(exc).__name__})"
    return None if check.ok is True else f"the requested key is refused by the key policy: {check.detail}"
