"""PEM key files for JWT tests (``--auth-token jwt,pub-key=..,priv-key=..``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization


def write_pem_pair(tmp: Path, key: Any, name: str) -> tuple[str, str]:
    """Write ``key`` (PKCS#8) and its public key (SubjectPublicKeyInfo) as ``<name>.key`` and
    ``<name>.pub`` under ``tmp``; their paths."""
    priv, pub = tmp / f"{name}.key", tmp / f"{name}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(priv), str(pub)
