"""The RSA key that signs ID tokens, kept in the data directory, and its public JWKS."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_or_create_key(data_dir: Path) -> bytes:
    """PEM of the signing key at ``data_dir/oidc_signing_key.pem`` (created once, mode 0600)."""
    path = data_dir / "oidc_signing_key.pem"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    return path.read_bytes()


def key_id(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()[:16]


def public_jwks(pem: bytes) -> dict[str, Any]:
    """The JSON Web Key Set that lets clients check ID tokens."""
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.public_key().public_numbers()
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": key_id(pem),
                      "n": _b64(numbers.n), "e": _b64(numbers.e)}]}
