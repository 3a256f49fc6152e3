"""The dashboard's pages and actions under ``/ui``: server-rendered, with htmx for the live view's polling.

Reads come from ``App.console``; writes go exactly where the CLI's go (``App.lifecycle.act_many`` for device
actions, the job queue for retry/cancel, with an audit entry), with the logged-in user's name as the actor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from policy.errors import DeviceNotFound, TrustportError
from policy.lifecycle import ACTIONS
from policy.model import LifecycleState, Outcome
from trustport.dashboard.web import (
    COOKIE,
    LOGIN_COOKIE,
    PAGE_HEADERS,
    PREFIX,
    Dashboard,
    Refused,
    dashboard_route_class,
    field,
    safe_next,
)
from trustport.services.accounts import Principal
from trustport.services.lifecycle import ActionResult, resolve_devices
from trustport.store.accounts import SqlAccountStore
from trustport.store.queue import FAILED, QUEUED, RUNNING, STATES, Job, JobNotFound, SqlJobQueue

PAGE_SIZE = 50
LIVE_ROWS = 100
PENDING_ACTIONS = ("approve", "quarantine", "decommission")
MAX_BULK = 500


@dataclass(frozen=True)
class Line:
    """One line of an action's answer."""

    text: str
    kind: str = "info"  # info, ok, warning, error
    href: str | None = None


def _state(value: str | None) -> LifecycleState | None:
    if not value:
        return None
    try:
        return LifecycleState(value)
    except ValueError:
        raise Refused(422, f"unknown state {value[:40]!r}; one of {', '.join(s.value for s in LifecycleState)}"
                      ) from None


def _int(value: str | None, name: str, default: int | None = None, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 12:
        raise Refused(422, f"{name} must be a whole number")
    return max(minimum, int(value))


def _job_id(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise JobNotFound(f"no enforcement job {value[:20]!r}: job ids are numbers")
    return int(value)


def allowed_actions(state: LifecycleState) -> list[str]:
    return [name for name, spec in ACTIONS.items() if state in spec.allowed_from]


def describe(results: Sequence[ActionResult], errors: Sequence[str], segment: str | None) -> list[Line]:
    """What happened, as ``trustport devices ACTION`` says it: each change, its queued jobs, what stays put."""
    lines: list[Line] = []
    for r in results:
        lines.append(Line(f"device #{r.after.id} {r.after.key.serial_number}: {r.before.state.value} -> "
                          f"{r.after.state.value}" + (f" (segment {r.after.segment})" if segment else "")
                          + (" — certificate added to the deny list" if r.denied else ""), "ok",
                          f"{PREFIX}/devices/{r.after.id}"))
        for q in r.queued:
            nas = q.session.nas_ip or q.session.nas_identifier or "?"
            if q.job is None:
                if not q.stays:
                    lines.append(Line(f"session {q.session.id} on {nas}: nothing queued ({q.problem})", "warning"))
                continue
            plan = ", ".join(f"{s.kind.value} {s.target}" for s in q.job.plan.steps)
            lines.append(Line(f"session {q.session.id} on {nas}: job #{q.job.id} queued -> VLAN {q.decision.vlan} "
                              f"via {plan}" + ("" if q.created else " (already queued)"), "info",
                              f"{PREFIX}/jobs/{q.job.id}"))
    note = next((r.enforcement_note for r in results if r.enforcement_note), None)
    if note:
        lines.append(Line(f"note: {note}", "warning"))
    lines += [Line(f"warning: {w}", "warning") for r in results for w in r.warnings]
    lines += [Line(f"refused: {e}", "error") for e in errors]
    return lines


def build_router(dash: Dashboard) -> APIRouter:  # noqa: PLR0915 -- one closure per page
    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=dashboard_route_class(dash))
    app = dash.app

    def page(request: Request, template: str, me: Principal, **context: Any) -> HTMLResponse:
        return dash.render(request, template, context, principal=me)

    # -- login / logout ----------------------------------------------------------------------------------------

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        token = dash.new_login_token()
        reply = dash.render(request, "login.html", {"next": safe_next(next), "login_token": token, "error": None})
        reply.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=PREFIX + "/login",
                         secure=dash.secure_cookie, max_age=3600)
        return reply

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        fields = await dash.form(request)
        name, password = field(fields, "name", limit=200), (fields.get("password") or [""])[0]
        target = safe_next(field(fields, "next", limit=2000))
        result = await run_in_threadpool(app.accounts.login, name, password[:2048], dash.clock())
        if result is None:
            # no extra wait needed: AccountService.login costs one scrypt for an unknown name, a disabled user
            # and a wrong password alike, as for a success
            token = dash.new_login_token()
            reply = dash.render(request, "login.html", {"next": target, "login_token": token,
                                                        "error": "wrong name or password"}, status=401)
            reply.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=PREFIX + "/login",
                             secure=dash.secure_cookie, max_age=3600)
            return reply
        cookie, _ = result
        done = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
        done.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path=PREFIX, secure=dash.secure_cookie,
                        max_age=dash.session_minutes * 60)
        done.delete_cookie(LOGIN_COOKIE, path=PREFIX + "/login")
        return done

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        me = await run_in_threadpool(dash.principal, request)
        await dash.form(request, me)
        await run_in_threadpool(app.accounts.logout, request.cookies.get(COOKIE, ""), dash.clock())
        reply = RedirectResponse(PREFIX + "/login", status_code=303, headers=PAGE_HEADERS)
        reply.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=dash.secure_cookie)
        return reply

    # -- reads -----------------------------------------------------------------------------------------------

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        me = dash.principal(request)
        now = dash.clock()
        return page(request, "overview.html", me, o=app.console.overview(now), states=list(LifecycleState),
                    outcomes=list(Outcome))

    def live_filters(outcome: str | None, text: str | None) -> tuple[str | None, str | None]:
        if outcome and outcome not in {o.value for o in Outcome}:
            raise Refused(422, f"unknown outcome {outcome[:40]!r}; one of accept, quarantine, reject")
        if text and len(text) > 200:
            raise Refused(422, "the search text is longer than 200 characters")
        return outcome or None, text or None

    @router.get("/live", response_class=HTMLResponse)
    def live(request: Request, outcome: str | None = None, text: str | None = None) -> Response:
        me = dash.principal(request)
        outcome, text = live_filters(outcome, text)
        rows = app.console.decisions(outcome=outcome, text=text, limit=LIVE_ROWS)
        return page(request, "live.html", me, rows=rows, outcome=outcome, text=text, outcomes=list(Outcome),
                    last_id=rows[0].id if rows else 0)

    @router.get("/live/rows", response_class=HTMLResponse)
    def live_rows(request: Request, after: str | None = None, outcome: str | None = None,
                  text: str | None = None) -> Response:
        me = dash.principal(request)
        outcome, text = live_filters(outcome, text)
        after_id = _int(after, "after", 0)
        rows = app.console.decisions(outcome=outcome, text=text, after_id=after_id, limit=LIVE_ROWS)
        return page(request, "_live_rows.html", me, rows=rows, fresh=True)

    @router.get("/devices", response_class=HTMLResponse)
    def devices(request: Request, state: str | None = None, segment: str | None = None, text: str | None = None,
                connected: str | None = None, page_no: str | None = None) -> Response:
        me = dash.principal(request)
        wanted = _state(state)
        if segment and segment not in app.config.segments:
            raise Refused(422, f"unknown segment {segment[:40]!r}; one of {', '.join(app.config.segments)}")
        if text and len(text) > 200:
            raise Refused(422, "the search text is longer than 200 characters")
        if connected not in (None, "", "yes", "no"):
            raise Refused(422, "connected is yes, no or empty")
        number = _int(page_no, "page", 1, minimum=1) or 1
        rows, total = app.console.devices(state=wanted, segment=segment or None, text=text or None,
                                          connected={"yes": True, "no": False}.get(connected or ""),
                                          limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
        query = {k: v for k, v in (("state", state), ("segment", segment), ("text", text),
                                   ("connected", connected)) if v}
        return page(request, "devices.html", me, rows=rows, total=total, page_no=number, pages=pages,
                    filters=query, states=list(LifecycleState), segments=list(app.config.segments))

    @router.get("/devices/{ref}", response_class=HTMLResponse)
    def device(request: Request, ref: str) -> Response:
        me = dash.principal(request)
        if len(ref) > 200:
            raise DeviceNotFound("no device with that id or serial")
        detail = app.console.device(ref)
        trail = app.console.audit(limit=100, device_id=detail.device.id)
        return page(request, "device.html", me, d=detail, trail=trail, actions=allowed_actions(detail.device.state),
                    segments=list(app.config.segments))

    @router.get("/pending", response_class=HTMLResponse)
    def pending(request: Request) -> Response:
        me = dash.principal(request)
        return page(request, "pending.html", me, items=app.console.pending(), actions=PENDING_ACTIONS,
                    segments=list(app.config.segments))

    @router.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request, state: str | None = None) -> Response:
        me = dash.principal(request)
        if state and state not in STATES:
            raise Refused(422, f"unknown job state {state[:40]!r}; one of {', '.join(STATES)}")
        listed = list(app.console.queue.list(state or None, limit=200))
        return page(request, "jobs.html", me, jobs=listed, state=state or "", job_states=STATES,
                    stats=app.console.queue.stats())

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job(request: Request, job_id: str) -> Response:
        me = dash.principal(request)
        found = app.console.job(_job_id(job_id))
        return page(request, "job.html", me, job=found, can_retry=found.state in (FAILED, "cancelled"),
                    can_cancel=found.state in (QUEUED, FAILED, RUNNING))

    # -- writes ----------------------------------------------------------------------------------------------

    def act(request: Request, me: Principal, refs: list[str], fields: Mapping[str, list[str]]) -> Response:
        action = field(fields, "action", limit=40)
        if action not in ACTIONS:
            raise Refused(422, f"unknown action {action[:40]!r}; one of {', '.join(ACTIONS)}")
        reason = field(fields, "reason", limit=500)
        if not reason:
            raise Refused(422, f"give a reason for '{action}' (it goes into the audit trail); nothing was changed")
        segment = field(fields, "segment", limit=100) or None
        if segment is not None and action not in ("approve", "release", "onboard", "reonboard"):
            segment = None  # the segment choice is for actions that place the device
        if not refs:
            raise Refused(422, "no device was selected; nothing was changed")
        if len(refs) > MAX_BULK:
            raise Refused(422, f"at most {MAX_BULK} devices at once; nothing was changed")
        try:
            app.lifecycle.check_segment(segment)
        except TrustportError as exc:
            raise Refused(422, str(exc)) from None
        records = resolve_devices(app.store, refs)
        results: list[ActionResult] = []
        errors: list[str] = []
        for outcome in app.lifecycle.act_many(records, action, actor=me.name, reason=reason, now=dash.clock(),
                                              segment=segment):
            if isinstance(outcome, TrustportError):
                errors.append(str(outcome))
            else:
                results.append(outcome)
        status = 409 if errors and not results else 200
        back = f"{PREFIX}/devices/{records[0].id}" if len(records) == 1 else f"{PREFIX}/pending"
        return dash.render(request, "result.html", {
            "title": f"{action}: {len(results)} changed" + (f", {len(errors)} refused" if errors else ""),
            "lines": describe(results, errors, segment), "back": back}, status=status, principal=me)

    @router.post("/devices/{ref}/action", response_class=HTMLResponse)
    async def device_action(request: Request, ref: str) -> Response:
        me = await run_in_threadpool(dash.principal, request, "operator")
        fields = await dash.form(request, me)
        return await run_in_threadpool(act, request, me, [ref[:200]], fields)

    @router.post("/bulk", response_class=HTMLResponse)
    async def bulk(request: Request) -> Response:
        me = await run_in_threadpool(dash.principal, request, "operator")
        fields = await dash.form(request, me)
        refs = [r.strip()[:200] for r in fields.get("device", []) if r.strip()]
        return await run_in_threadpool(act, request, me, refs, fields)

    def job_action(request: Request, me: Principal, job_id: int, what: str) -> Response:
        queue = SqlJobQueue(app.store)
        now = dash.clock()
        done: Job = queue.retry(job_id, now, me.name) if what == "retry" else queue.cancel(job_id, now, me.name)
        SqlAccountStore(app.store).audit(now, me.name, f"job-{what}", f"job {job_id}")
        lines = [Line(f"job #{done.id} queued again (by {me.name}); a running 'trustport worker' takes it", "ok")
                 if what == "retry" else Line(f"job #{done.id} cancelled (by {me.name})", "ok")]
        if what == "cancel" and done.bounce_in_progress is not None:
            target, port = done.bounce_in_progress
            lines.append(Line(f"warning: job #{done.id} was bouncing {target} {port}: check that the port is up "
                              f"(or retry the job)", "warning"))
        return dash.render(request, "result.html", {"title": f"job #{done.id}: {what}", "lines": lines,
                                                    "back": f"{PREFIX}/jobs/{done.id}"}, principal=me)

    @router.post("/jobs/{job_id}/retry", response_class=HTMLResponse)
    async def job_retry(request: Request, job_id: str) -> Response:
        me = await run_in_threadpool(dash.principal, request, "operator")
        await dash.form(request, me)
        return await run_in_threadpool(job_action, request, me, _job_id(job_id), "retry")

    @router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
    async def job_cancel(request: Request, job_id: str) -> Response:
        me = await run_in_threadpool(dash.principal, request, "operator")
        await dash.form(request, me)
        return await run_in_threadpool(job_action, request, me, _job_id(job_id), "cancel")

    return router
