"""The attestation routes' models (unchanged from the first API), and the problem document every error is."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator


class AttestationIn(BaseModel):
    token: str = Field(min_length=1, max_length=65536, description="EAR JWT (compact JWS)")
    device: str | None = Field(default=None, max_length=128, description="registry id or device serial number")
    certificate: str | None = Field(default=None, max_length=16384,
                                    description="the device's EAP-TLS certificate (PEM), for akpub/cnf binding")

    @field_validator("token", "device", "certificate")
    @classmethod
    def _real_text(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains a lone surrogate (\\ud800-\\udfff); send UTF-8 text") from None
        return value

    @field_validator("token", "certificate")
    @classmethod
    def _ascii(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError("must be ASCII (a compact JWS, a PEM certificate)")
        return value


class AttestationOut(BaseModel):
    device_id: int
    device_serial: str
    accepted: bool
    status: str | None
    binding: str | None
    expires_at: datetime | None
    reasons: list[str]
    reevaluation: str | None = Field(description="set when a connected device's standing dropped")


class NonceOut(BaseModel):
    device_id: int
    nonce: str
    expires_at: datetime


class Problem(BaseModel):
    reason: str
    message: str


class ProblemOut(BaseModel):
    detail: Problem
