"""trustport's REST API (FastAPI): attestation results arrive here from verifiers. OpenAPI at /docs.

Every route but /healthz needs ``Authorization: Bearer <token>`` with one of the configured API tokens
(compared in constant time). Bodies larger than 256 KiB are refused before they are read.
"""


import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from policy.attestation import TokenRejected
from policy.errors import AttestationError, CertificateError, DeviceNotFound, StoreError
from policy.store_sql import SqlDeviceStore
from radius_hooks.trust import TrustMaterial
from trustport.attest import AttestationService
from trustport.config import TrustportConfig

MAX_BODY_BYTES = 256 * 1024
_NONCE_TTL = timedelta(hours=1)


class AttestationIn(BaseModel):
    token: str = Field(min_length=1, max_length=65536, description="EAR JWT (compact JWS)")
    device: str | None = Field(default=None, max_length=128, description="registry id or device serial number")
    certificate: str | None = Field(default=None, max_length=16384,
                                    description="the device's EAP-TLS certificate (PEM), for akpub/cnf binding")


class AttestationOut(BaseModel):
    device_id: int
    device_serial: str
    accepted: bool
    status: str | None
    binding: str | None
    expires_at: datetime | None
    reasons: list[str]
    reevaluation: str | None = Field(description="set when a connected device's standing dropped")


class Problem(BaseModel):
    reason: str
    message: str


class NonceOut(BaseModel):
    device_id: int
    nonce: str
    expires_at: datetime


def create_app(config: TrustportConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    if config.api is None:
        raise AttestationError("the REST API is not configured: add an 'api:' section with at least one token")
    tokens = [(t.name, t.secret.reveal().encode()) for t in config.api.tokens]
    settings = config.hook_settings()
    store = SqlDeviceStore(settings.database_url)
    trust = TrustMaterial.load(settings.anchors, settings.crl_dir, settings.crl_refresh_seconds, time.monotonic)
    service = AttestationService(settings.attestation, store, trust)
    app = FastAPI(title="trustport", version="0.1.0",
                  description="Trusted network-layer onboarding: attestation results and device standing.")
    bearer = HTTPBearer(auto_error=False)

    def authenticated(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if credentials is not None and credentials.scheme.lower() == "bearer":
            presented = credentials.credentials.encode()
            for name, secret in tokens:
                if hmac.compare_digest(presented, secret):
                    return name
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid API token",
                            headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    def problem(code: int, reason: str, message: str) -> HTTPException:
        return HTTPException(code, {"reason": reason, "message": message})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        store.ping()
        return {"status": "ok"}

    @app.post("/v1/attestation-results", status_code=201, response_model=AttestationOut,
              responses={401: {}, 404: {"model": Problem}, 413: {}, 422: {"model": Problem}})
    def post_result(body: AttestationIn, _client: Annotated[str, Depends(authenticated)]) -> AttestationOut:
        try:
            outcome = service.import_token(body.token, clock(), device_ref=body.device,
                                           certificate_pem=body.certificate.encode() if body.certificate else None)
        except TokenRejected as exc:
            raise problem(422, exc.reason, str(exc)) from exc
        except DeviceNotFound as exc:
            raise problem(404, "unknown-device", str(exc)) from exc
        except (CertificateError, AttestationError) as exc:
            raise problem(422, "invalid", str(exc)) from exc
        except StoreError as exc:
            raise problem(503, "store", str(exc)) from exc
        stored = outcome.stored
        return AttestationOut(device_id=outcome.device.id, device_serial=outcome.device.key.serial_number,
                              accepted=stored.accepted, status=stored.status.name.lower() if stored.status else None,
                              binding=stored.binding, expires_at=stored.expires_at, reasons=list(stored.reasons),
                              reevaluation=outcome.reevaluation)

    @app.get("/v1/devices/{device}/attestation-results", response_model=list[AttestationOut])
    def list_results(device: str, _client: Annotated[str, Depends(authenticated)]) -> list[AttestationOut]:
        try:
            record = service.resolve(device)
        except DeviceNotFound as exc:
            raise problem(404, "unknown-device", str(exc)) from exc
        return [AttestationOut(device_id=record.id, device_serial=record.key.serial_number, accepted=r.accepted,
                               status=r.status.name.lower() if r.status else None, binding=r.binding,
                               expires_at=r.expires_at, reasons=list(r.reasons), reevaluation=None)
                for r in service.results.results(record.id)]

    @app.post("/v1/devices/{device}/attestation-nonce", status_code=201, response_model=NonceOut)
    def new_nonce(device: str, _client: Annotated[str, Depends(authenticated)]) -> NonceOut:
        try:
            record = service.resolve(device)
        except DeviceNotFound as exc:
            raise problem(404, "unknown-device", str(exc)) from exc
        now = clock()
        nonce = service.results.issue_nonce(record.id, now, _NONCE_TTL)
        return NonceOut(device_id=record.id, nonce=nonce, expires_at=now + _NONCE_TTL)

    app.state.store = store
    return app

