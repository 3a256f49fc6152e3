"""/v1/devices, lifecycle actions, /v1/sessions and the attestation routes: the same services the CLI uses."""

# No ``from __future__ import annotations``: FastAPI reads these signatures' real types.
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from policy.attestation import TokenRejected
from policy.dn import DnError, canonical_dn, canonical_serial
from policy.errors import AttestationError, CertificateError, DeviceNotFound, IdentityError, TrustportError
from policy.model import DeviceKey, DeviceRecord, LifecycleState
from policy.x509facts import load_pem_certificates
from trustport.api.attestation_models import AttestationIn, AttestationOut, NonceOut
from trustport.api.auth import Admin, ApiContext, Operator, Viewer
from trustport.api.core import problem
from trustport.api.models import (
    ActionIn,
    ActionOut,
    BulkActionIn,
    CertificateOut,
    ChangedOut,
    ClearedOut,
    ConnectedOut,
    DecisionOut,
    DeviceAddIn,
    DeviceDetailOut,
    DeviceOut,
    DevicePage,
    DeviceRowOut,
    JobOut,
    LifecycleOut,
    SessionIn,
    SessionOut,
    plain,
)
from trustport.services.attestation import check_device_ref
from trustport.services.lifecycle import ActionResult
from trustport.store.accounts import SqlAccountStore
from trustport.store.sessions import SessionInputError, SqlSessionStore, manual_context

ActionName = Literal["approve", "quarantine", "release", "decommission", "revoke", "onboard", "reonboard"]
_NONCE_TTL = timedelta(hours=1)


def action_answer(results: list[ActionResult], errors: list[str]) -> ActionOut:
    """What ``trustport devices ACTION --json`` says: each change with its jobs, refusals, warnings."""
    return ActionOut(
        changed=[ChangedOut(device=DeviceOut.of(r.after), from_state=r.before.state.value, denied=r.denied,
                            jobs=[q.job.id for q in r.queued if q.job is not None]) for r in results],
        errors=errors, enforcement=next((r.enforcement_note for r in results if r.enforcement_note), None),
        warnings=[w for r in results for w in r.warnings])


def router(ctx: ApiContext, problems: dict[int | str, dict[str, Any]]) -> APIRouter:  # noqa: PLR0915 -- one closure per route
    api = APIRouter(prefix="/v1", responses=problems)
    root = ctx.root

    def resolve(ref: str) -> DeviceRecord:
        from trustport.services.devices import resolve_device

        return resolve_device(root.store, check_device_ref(ref))

    @api.get("/devices", response_model=DevicePage, tags=["devices"], summary="List devices")
    def list_devices(_who: Viewer, state: LifecycleState | None = None,
                     segment: Annotated[str | None, Query(max_length=64)] = None,
                     text: Annotated[str | None, Query(max_length=128, description="substring of serial, owner, "
                                                                                     "class or location")] = None,
                     connected: bool | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> DevicePage:
        """Devices newest first, filtered, one page at a time, each with where it is connected now."""
        rows, total = root.console.devices(state=state, segment=segment, text=text, connected=connected,
                                           limit=limit, offset=offset)
        return DevicePage(total=total, limit=limit, offset=offset, items=[
            DeviceRowOut(device=DeviceOut.of(r.device), connected=[ConnectedOut.of(c) for c in r.connected])
            for r in rows])

    @api.get("/devices/{device}", response_model=DeviceDetailOut, tags=["devices"], summary="Show a device")
    def show_device(device: str, _who: Viewer) -> DeviceDetailOut:
        """One device (registry id or serial number): certificate facts, decisions, sessions, lifecycle, jobs,
        attestation."""
        d = root.console.device(check_device_ref(device))
        return DeviceDetailOut(device=DeviceOut.of(d.device),
                               certificate=CertificateOut.of(d.certificate) if d.certificate else None,
                               connected=[ConnectedOut.of(c) for c in d.connected], sessions=plain(d.sessions),
                               decisions=[DecisionOut.of(x) for x in d.decisions],
                               lifecycle=[LifecycleOut.of(e) for e in d.lifecycle],
                               jobs=[JobOut.of(j) for j in d.jobs], attestation=plain(d.attestation))

    @api.post("/devices", status_code=201, response_model=DeviceOut, tags=["devices"], summary="Register a device")
    def add_device(body: DeviceAddIn, who: Admin) -> DeviceOut:
        """By its certificate (validated as the RADIUS path would; refused unless ``force``), or by issuer DN +
        serial number."""
        config = root.config
        if body.segment is not None and body.segment not in config.segments:
            raise problem(422, "unknown-segment", f"segment {body.segment!r} is not defined; known: "
                                                  f"{', '.join(config.segments)}")
        facts = kind = None
        warning = None
        if body.certificate is not None:
            facts, kind, warning = _validated_pem(body.certificate, body.chain, body.force)
            issuer, serial = facts.issuer, facts.device_serial or ""
        elif body.issuer and body.serial:
            try:
                issuer, serial = canonical_dn(body.issuer, "issuer"), canonical_serial(body.serial, "serial")
            except DnError as exc:
                raise problem(422, "bad-name", str(exc)) from exc
            if not issuer:
                raise problem(422, "bad-name", "issuer must be a one-line DN such as '/C=DE/O=Acme/CN=Acme CA'")
        else:
            raise problem(422, "invalid-request", "give certificate (PEM), or issuer and serial")
        now = ctx.clock()
        record = root.store.add_device(DeviceKey(issuer, serial), state=LifecycleState(body.state),
                                       segment=body.segment, owner=body.owner, notes=body.notes, cert_kind=kind,
                                       facts=facts, now=now)
        SqlAccountStore(root.store).audit(now, who.name, "device-add", f"device #{record.id} {serial}",
                                          f"state {record.state.value}" + (f"; forced: {warning}" if warning else ""))
        return DeviceOut.of(record)

    def _validated_pem(pem: str, chain: str | None, force: bool) -> tuple[Any, Any, str | None]:
        from trustport.cli.decide import evaluate_pem

        certs = load_pem_certificates(pem.encode("ascii", "replace"), "certificate")
        intermediates = certs[1:] + (load_pem_certificates(chain.encode("ascii", "replace"), "chain")
                                     if chain else [])
        judged = evaluate_pem(root.authorizer, certs[0], intermediates, ctx.clock())
        if judged.facts is None:
            raise IdentityError(f"certificate: {judged.checks[0].detail}")
        if not judged.facts.device_serial:
            raise CertificateError("certificate: subject has no serialNumber; not an 802.1AR device certificate")
        why = "; ".join(f"{c.name}: {c.detail}" for c in judged.checks if c.ok is False)
        if why and not force:
            raise problem(422, "certificate-rejected", f"FreeRADIUS and the hook would reject this certificate "
                                                       f"({why}); fix it, or register it anyway with force: true")
        return judged.facts, judged.result.verdict.kind, why or None

    def act(refs: list[str], action: str, body: ActionIn, who: Any) -> tuple[list[ActionResult], list[str]]:
        from trustport.services.lifecycle import resolve_devices

        service = root.lifecycle
        service.check_segment(body.segment)
        records = resolve_devices(root.store, [check_device_ref(r) for r in refs])
        results: list[ActionResult] = []
        errors: list[str] = []
        for outcome in service.act_many(records, action, actor=who.name, reason=body.reason, now=ctx.clock(),
                                        segment=body.segment):
            if isinstance(outcome, TrustportError):
                errors.append(str(outcome))
            else:
                results.append(outcome)
        return results, errors

    @api.post("/devices/{device}/actions/{action}", response_model=ActionOut, tags=["lifecycle"],
              summary="A lifecycle action on one device")
    def device_action(device: str, action: ActionName, who: Operator, body: ActionIn | None = None) -> ActionOut:
        """approve, quarantine, release, decommission, revoke, onboard, reonboard: audited with the token's name as
        actor; answers the enforcement jobs queued and every connected device that stays where it is (409 when the
        action does not apply to the device's state)."""
        results, errors = act([device], action, body or ActionIn(), who)
        if errors and not results:
            raise problem(409, "refused", errors[0])
        return action_answer(results, errors)

    @api.post("/devices/actions/{action}", response_model=ActionOut, tags=["lifecycle"],
              summary="A lifecycle action on many devices")
    def bulk_action(action: ActionName, body: BulkActionIn, who: Operator) -> ActionOut:
        """Every device is resolved first (404 naming each unknown one, nothing changed); then each is acted on;
        the devices it does not apply to are listed in ``errors``."""
        results, errors = act(body.devices, action, body, who)
        return action_answer(results, errors)

    # -- sessions ----------------------------------------------------------------------------------------------

    @api.get("/sessions", response_model=list[SessionOut], tags=["sessions"], summary="Active sessions")
    def list_sessions(_who: Viewer, device: Annotated[str | None, Query(max_length=4096)] = None
                      ) -> list[SessionOut]:
        """Which device is on which NAS and port (optionally one device's)."""
        sessions = SqlSessionStore(root.store)
        active = sessions.active_for_device(resolve(device).id) if device is not None else sessions.all_active()
        return [SessionOut.of(s) for s in active]

    @api.post("/sessions", status_code=201, response_model=SessionOut, tags=["sessions"],
              summary="Record a session by hand")
    def add_session(body: SessionIn, who: Operator) -> SessionOut:
        """For NASes that send no RADIUS accounting (as ``trustport sessions add``); audited."""
        try:
            context = manual_context(body.nas, body.port, body.mac)
        except SessionInputError as exc:
            raise problem(422, "invalid-request", f"body.{exc.field}: {exc}") from exc
        record = resolve(body.device)
        now = ctx.clock()
        session = SqlSessionStore(root.store).add_manual(record.id, context, body.vlan, now)
        SqlAccountStore(root.store).audit(now, who.name, "session-add", f"device #{record.id}",
                                          f"session {session.id} on NAS {body.nas} port {body.port}")
        return SessionOut.of(session)

    @api.delete("/devices/{device}/sessions", response_model=ClearedOut, tags=["sessions"],
                summary="End a device's sessions")
    def clear_sessions(device: str, who: Operator,
                       session: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> ClearedOut:
        """All the device's active sessions, or the one given (404 if it is not an active session of the device);
        audited."""
        record = resolve(device)
        now = ctx.clock()
        ended = SqlSessionStore(root.store).clear(record.id, now, session)
        if ended == 0 and session is not None:
            raise problem(404, "unknown-session", f"session {session} is not an active session of device "
                                                  f"#{record.id}")
        SqlAccountStore(root.store).audit(now, who.name, "session-clear", f"device #{record.id}",
                                          f"{ended} session(s) ended" + (f" (session {session})" if session else ""))
        return ClearedOut(device_id=record.id, ended=ended)

    # -- attestation -------------------------------------------------------------------------------------------

    @api.post("/attestation-results", status_code=201, response_model=AttestationOut, tags=["attestation"],
              summary="Post an attestation result")
    def post_result(body: AttestationIn, _who: Operator) -> AttestationOut:
        """An EAR token from a verifier; verified, bound to the device, stored."""
        service = root.attestation
        try:
            outcome = service.import_token(body.token, ctx.clock(), device_ref=body.device,
                                           certificate_pem=body.certificate.encode() if body.certificate else None)
        except TokenRejected as exc:
            raise problem(422, exc.reason, str(exc)) from exc
        except DeviceNotFound:
            raise
        except (CertificateError, AttestationError) as exc:
            raise problem(422, "invalid", str(exc)) from exc
        stored = outcome.stored
        return AttestationOut(device_id=outcome.device.id, device_serial=outcome.device.key.serial_number,
                              accepted=stored.accepted, status=stored.status.name.lower() if stored.status else None,
                              binding=stored.binding, expires_at=stored.expires_at, reasons=list(stored.reasons),
                              reevaluation=outcome.reevaluation)

    @api.get("/devices/{device}/attestation-results", response_model=list[AttestationOut], tags=["attestation"],
             summary="A device's attestation results")
    def list_results(device: str, _who: Viewer) -> list[AttestationOut]:
        service = root.attestation
        record = service.resolve(device)
        return [AttestationOut(device_id=record.id, device_serial=record.key.serial_number, accepted=r.accepted,
                               status=r.status.name.lower() if r.status else None, binding=r.binding,
                               expires_at=r.expires_at, reasons=list(r.reasons), reevaluation=None)
                for r in service.results.results(record.id)]

    @api.post("/devices/{device}/attestation-nonce", status_code=201, response_model=NonceOut, tags=["attestation"],
              summary="Issue an attestation nonce")
    def new_nonce(device: str, _who: Operator) -> NonceOut:
        service = root.attestation
        record = service.resolve(device)
        now = ctx.clock()
        nonce = service.results.issue_nonce(record.id, now, _NONCE_TTL)
        return NonceOut(device_id=record.id, nonce=nonce, expires_at=now + _NONCE_TTL)

    return api
