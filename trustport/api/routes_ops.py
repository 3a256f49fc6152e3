"""/v1/overview, decisions, jobs, audit, policy, decide, and /metrics."""

# No ``from __future__ import annotations``: FastAPI reads these signatures' real types.
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from policy.model import NetworkContext, Outcome
from policy.x509facts import load_pem_certificates
from trustport.api.auth import ApiContext, Operator, Viewer
from trustport.api.core import problem
from trustport.api.models import (
    AuditOut,
    CheckOut,
    DecideIn,
    DecideOut,
    DecisionOut,
    DecisionResult,
    JobCancelIn,
    JobOut,
    OverviewOut,
    PolicyCheckIn,
    PolicyCheckOut,
    PolicyOut,
    ProblemItem,
    plain,
)
from trustport.store.accounts import SqlAccountStore
from trustport.store.queue import SqlJobQueue

JobState = Literal["queued", "running", "done", "failed", "cancelled"]


def router(ctx: ApiContext, problems: dict[int | str, dict[str, Any]]) -> APIRouter:  # noqa: PLR0915 -- one closure per route
    api = APIRouter(responses=problems)
    root = ctx.root

    @api.get("/v1/overview", response_model=OverviewOut, tags=["console"], summary="The overview")
    def overview(_who: Viewer) -> OverviewOut:
        """Devices by state, decisions of the last 24 h, sessions, jobs, CRL ages, the directory's status."""
        o = root.console.overview(ctx.clock())
        return OverviewOut(devices=o.devices, decisions=o.decisions, active_sessions=o.active_sessions,
                           jobs=plain(o.jobs), failed_jobs=[JobOut.of(j) for j in o.failed_jobs],
                           crls=plain(o.crls), directory=plain(o.directory) if o.directory else None,
                           directory_name=o.directory_name)

    @api.get("/v1/decisions", response_model=list[DecisionOut], tags=["console"], summary="The decision log")
    def decisions(_who: Viewer, outcome: Outcome | None = None,
                  text: Annotated[str | None, Query(max_length=128, description="device, NAS, port or MAC")] = None,
                  after_id: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="only newer ones (poll)")]
                  = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[DecisionOut]:
        """Newest first; poll with ``after_id`` = the largest id seen for the live view."""
        return [DecisionOut.of(d) for d in root.console.decisions(
            outcome=outcome.value if outcome else None, text=text, after_id=after_id, limit=limit)]

    # -- jobs --------------------------------------------------------------------------------------------------

    @api.get("/v1/jobs", response_model=list[JobOut], tags=["jobs"], summary="Enforcement jobs")
    def list_jobs(_who: Viewer, state: JobState | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[JobOut]:
        return [JobOut.of(j) for j in root.console.queue.list(state, limit)]

    @api.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"], summary="One job")
    def show_job(job_id: int, _who: Viewer) -> JobOut:
        """Its state and why, its steps and its whole log."""
        return JobOut.of(root.console.job(_job_id(job_id)))

    @api.post("/v1/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"], summary="Retry a job")
    def retry_job(job_id: int, who: Operator) -> JobOut:
        """A failed or cancelled job back in the queue from its first step (409 otherwise); in its log and the
        audit log with the token's name."""
        now = ctx.clock()
        job = SqlJobQueue(root.store).retry(_job_id(job_id), now, who.name)
        SqlAccountStore(root.store).audit(now, who.name, "job-retry", f"job #{job.id}", job.reason)
        return JobOut.of(job)

    @api.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], summary="Cancel a job")
    def cancel_job(job_id: int, who: Operator, body: JobCancelIn | None = None) -> JobOut:
        """A queued or failed job (a running one only with ``force``; 409 otherwise); audited."""
        now = ctx.clock()
        force = body.force if body is not None else False
        job = SqlJobQueue(root.store).cancel(_job_id(job_id), now, who.name, force=force)
        SqlAccountStore(root.store).audit(now, who.name, "job-cancel", f"job #{job.id}",
                                          job.reason + (" (forced)" if force else ""))
        return JobOut.of(job)

    # -- audit -------------------------------------------------------------------------------------------------

    @api.get("/v1/audit", response_model=list[AuditOut], tags=["console"], summary="The audit trail")
    def audit(_who: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 100,
              device: Annotated[str | None, Query(max_length=4096, description="id or serial")] = None,
              actor: Annotated[str | None, Query(max_length=128)] = None) -> list[AuditOut]:
        """Lifecycle events and every other write (tokens, users, sessions, jobs), newest first."""
        device_id = None
        if device is not None:
            from trustport.services.attestation import check_device_ref
            from trustport.services.devices import resolve_device

            device_id = resolve_device(root.store, check_device_ref(device)).id
        return [AuditOut.of(a) for a in root.console.audit(limit=limit, device_id=device_id, actor=actor)]

    # -- policy and decide -------------------------------------------------------------------------------------

    @api.get("/v1/policy", response_model=PolicyOut, tags=["policy"], summary="The effective rule table")
    def policy(_who: Viewer) -> PolicyOut:
        """The compiled rules in order, each with its segment, VLAN per site and Filter-Id (``policy check
        --explain``)."""
        from policy.decide import rule_table

        document = root.config.policy_document()
        rules = document.segment_rules()
        return PolicyOut(policy_revision=document.revision(), rules=rule_table(rules),
                         fallbacks={"quarantine": rules.quarantine_segment, "default": rules.default_segment,
                                    "onboarding": rules.onboarding_segment},
                         admit_unregistered=[r.name for r in rules.rules if r.admits_unregistered()])

    @api.post("/v1/policy/check", response_model=PolicyCheckOut, tags=["policy"], summary="Check a policy file")
    def policy_check(body: PolicyCheckIn, _who: Viewer) -> PolicyCheckOut:
        """A policy document (YAML: segments, sites, policy) -> every problem with its line. Never applied."""
        from trustport.settings.config import check_policy_file

        with tempfile.TemporaryDirectory(prefix="trustport-policy-") as tmp:
            path = Path(tmp) / "document.yaml"
            path.write_text(body.document, encoding="utf-8")
            document, found = check_policy_file(path)
        rules = document.segment_rules() if document is not None and not found else None
        return PolicyCheckOut(
            ok=not found, problems=[ProblemItem(location=p.location.replace(str(path), "document"),
                                                message=p.message) for p in found],
            rules=[r.name for r in rules.rules] if rules else [],
            admit_unregistered=[r.name for r in rules.rules if r.admits_unregistered()] if rules else [],
            policy_revision=document.revision() if document is not None and rules is not None else None)

    @api.post("/v1/decide", response_model=DecideOut, tags=["policy"], summary="What would happen to a device?")
    def decide(body: DecideIn, _who: Viewer) -> DecideOut:
        """A certificate (PEM) and the NAS context -> the checks and decision FreeRADIUS + the hook would make.
        Writes nothing (``trustport decide``)."""
        from trustport.cli.decide import evaluate_pem

        certs = load_pem_certificates(body.certificate.encode("ascii", "replace"), "certificate")
        intermediates = certs[1:] + (load_pem_certificates(body.chain.encode("ascii", "replace"), "chain")
                                     if body.chain else [])
        authorizer = root.authorizer
        context = NetworkContext(nas_ip=body.nas_ip, nas_port=body.nas_port)
        judged = evaluate_pem(authorizer, certs[0], intermediates, ctx.clock(), context)
        facts, decision, result = judged.facts, judged.decision, judged.result
        device = result.device if result is not None else None
        return DecideOut(
            device=None if facts is None else {
                "issuer": facts.issuer, "serial_number": facts.device_serial, "subject": facts.subject,
                "mud_url": facts.mud_url, "registry_id": device.id if device else None,
                "state": device.state.value if device else None},
            checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in judged.checks],
            decision=DecisionResult(outcome=decision.outcome.value, vlan=decision.vlan, segment=decision.segment,
                                    rule=decision.rule, filter_id=decision.filter_id, reasons=list(decision.reasons)),
            policy_revision=authorizer.policy_revision)

    # -- metrics -----------------------------------------------------------------------------------------------

    @api.get("/metrics", tags=["metrics"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
    def metrics(_who: Viewer) -> Response:
        """The Prometheus exposition (scrape with a viewer token)."""
        from trustport.observability.metrics import exposition

        body, content_type = exposition(root)
        return Response(content=body, media_type=content_type)

    return api


def _job_id(job_id: int) -> int:
    if not 1 <= job_id <= 2**63 - 1:
        raise problem(404, "unknown-job", f"no enforcement job {job_id}; job ids are 1..2**63-1")
    return job_id
