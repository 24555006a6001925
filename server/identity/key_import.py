"""A single node's signing-key files (``keys/*.jwk``) as rows of the shared ``signing_keys``
table, so tokens a single node issued keep verifying on every node after ``import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from dropline.server.identity.key_table import seal_private_jwk


class KeyFileError(ValueError):
    """A key file that cannot be read as a signing key; the message names the file."""


def signing_key_rows(keys_dir: Path, master: bytes | None) -> list[dict[str, Any]]:
    """One ``signing_keys`` row per ``*.jwk`` file in ``keys_dir`` (the file-backed key
    ring's format: a private JWK plus ``created_at``), sealed with ``master`` if given,
    exactly as ``TableSigningKeys`` stores the keys it makes."""
    rows = []
    for path in sorted(keys_dir.glob("*.jwk")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            created = float(data.pop("created_at", 0.0))
            key = ECKey.import_key(data)
        except (OSError, ValueError, TypeError, KeyError, JoseError) as exc:
            raise KeyFileError(f"{path} is not a signing key: {exc}") from None
        if not key.kid:
            raise KeyFileError(f"{path} is not a signing key: it has no kid")
        kid = str(key.kid)
        stored, sealed = seal_private_jwk(master, kid, json.dumps(key.as_dict(private=True)))
        rows.append(
            {
                "kid": kid,
                "private_jwk": stored,
                "sealed": sealed,
                "created_at": created,
                "retired_at": None,
            }
        )
    return rows


__all__ = ["KeyFileError", "signing_key_rows"]
