"""Access-token validation: OAuth2 bearer JWTs checked locally with PyJWT.

Signature against the issuer's JWKS (a file, re-read when it changes, or a URL fetched by PyJWKClient and
cached), RS256/ES256; HS256 only with a development secret configured. iss, aud, exp and nbf are
required and checked with a small clock skew.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

import jwt
from jwt import PyJWKClient, PyJWKSet

from ipt_fhir.settings import Settings

ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not for us: 401."""


@dataclass(frozen=True)
class Claims:
    raw: dict

    @property
    def scopes(self) -> list[str]:
        scope = self.raw.get("scope", self.raw.get("scp", ""))
        return scope.split() if isinstance(scope, str) else [str(s) for s in scope]


class _FileJWKS:
    """A JWKS file, re-read when its modification time changes (key rotation without restart)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._lock = threading.Lock()

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            raise TokenError("the signing keys are unavailable") from exc
        with self._lock:
            if mtime != self._mtime:
                with open(self.path, "rb") as f:
                    data = json.load(f)
                keyset = PyJWKSet.from_dict(data)
                self._keys = {k.key_id: k for k in keyset.keys}
                self._mtime = mtime
            keys = self._keys
        if kid in keys:
            return keys[kid]
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        raise TokenError("no signing key matches the token's kid")


class _UrlJWKS:
    def __init__(self, url: str) -> None:
        self.client = PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        try:
            if kid is None:
                keys = self.client.get_signing_keys()
                if len(keys) != 1:
                    raise TokenError("the token has no kid and the issuer has several keys")
                return keys[0]
            return self.client.get_signing_key(kid)
        except jwt.PyJWKClientError as exc:
            raise TokenError("no signing key matches the token's kid") from exc


class TokenValidator:
    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.hs256_secret = settings.jwt_hs256_secret
        jwks = settings.jwks
        self.keys: _FileJWKS | _UrlJWKS | None = None
        if jwks:
            self.keys = _UrlJWKS(jwks) if jwks.startswith(("https://", "http://")) else _FileJWKS(jwks)

    def validate(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("the access token is not a JWT") from exc
        alg = header.get("alg")
        if alg in ASYMMETRIC_ALGORITHMS and self.keys is not None:
            key = self.keys.key_for(header.get("kid"))
        elif alg == "HS256" and self.hs256_secret:
            key = self.hs256_secret
        else:
            raise TokenError(f"tokens signed with {alg!r} are not accepted")
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the access token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("the access token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("the access token is not for this server (aud)") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("the access token has an unexpected issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("the access token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid access token: {exc}") from exc
        return Claims(claims)
