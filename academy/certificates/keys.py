"""The certificate signing keys: kept in the data directory, apart from the OIDC signing key.

``<data dir>/certificate_keys/`` holds RSA private keys as PEM files.  The newest file (by
name: they are named ``YYYYMMDDTHHMMSSZ.pem``) signs new credentials; every file's public key
stays in the JWKS at ``/certificates/jwks.json`` so credentials signed before a rotation still
verify.  To rotate, put a new PEM file there (``academy certificate new-key``); never delete an
old one while its credentials are in use.  The key id (``kid``) is the RFC 7638 thumbprint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

ALGORITHM = "RS256"  # Open Badges 3.0 asks every verifier to support RS256
KEY_DIR = "certificate_keys"


@dataclass(frozen=True)
class SigningKey:
    """One certificate key: its id and the joserfc key object (private part included)."""

    kid: str
    key: RSAKey

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK with its ``kid``, ``alg`` and ``use``."""
        jwk = self.key.as_dict(private=False)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def key_dir(data_dir: Path) -> Path:
    """Where the certificate keys live."""
    return Path(data_dir) / KEY_DIR


def new_key(data_dir: Path, *, now: dt.datetime | None = None) -> Path:
    """Write a new RSA key (mode 0600) that signs from now on; returns its path."""
    now = now or dt.datetime.now(dt.UTC)
    folder = key_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = folder / f"{now.strftime('%Y%m%dT%H%M%S')}Z.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    _load.cache_clear()
    return path


@lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> SigningKey:
    key = RSAKey.import_key(Path(path).read_bytes())
    return SigningKey(kid=key.thumbprint(), key=key)


def all_keys(data_dir: Path) -> list[SigningKey]:
    """Every certificate key, oldest first; one is made on first use."""
    folder = key_dir(data_dir)
    paths = sorted(folder.glob("*.pem")) if folder.is_dir() else []
    if not paths:
        with contextlib.suppress(FileExistsError):  # another process made it in the same second: use theirs
            new_key(data_dir)
        paths = sorted(folder.glob("*.pem"))
    return [_load(str(p), p.stat().st_mtime) for p in paths]


def current_key(data_dir: Path) -> SigningKey:
    """The key that signs new credentials: the newest."""
    return all_keys(data_dir)[-1]


def public_jwks(data_dir: Path) -> dict[str, Any]:
    """The JSON Web Key Set that verifies every credential the academy issued."""
    return {"keys": [k.public_jwk() for k in all_keys(data_dir)]}
