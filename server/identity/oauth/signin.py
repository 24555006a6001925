"""Checking a person's email and password for the sign-in and device pages.

The organisation is optional: when an email exists in several tenants, the
password is tried against each and only an unambiguous match signs in. Every
path spends one argon2 verification or more, so an unknown email costs the same
time as a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from dropline.server.identity.accounts import verify_password
from dropline.server.storage import schema
from dropline.server.storage.db import Database


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: str
    tenant_id: str
    email: str


class SignInError(Exception):
    """A message fit to show on the page."""


def check_password(db: Database, organisation: str, email: str, password: str) -> SignedIn:
    email = email.strip().lower()
    organisation = organisation.strip()
    q = (
        select(schema.users.c.id, schema.users.c.tenant_id, schema.users.c.password_hash)
        .join(schema.tenants, schema.tenants.c.id == schema.users.c.tenant_id)
        .where(schema.users.c.email == email, schema.users.c.is_active.is_(True))
    )
    if organisation:
        q = q.where(schema.tenants.c.name == organisation)
    with db.read() as conn:
        rows = conn.execute(q).all()
    if not rows:
        verify_password(None, password)
        raise SignInError("The email or password is not right. Check them and try again.")
    matches = [r for r in rows if verify_password(r.password_hash, password)]
    if not matches:
        raise SignInError("The email or password is not right. Check them and try again.")
    if len(matches) > 1:
        raise SignInError(
            "This account exists in more than one organisation: enter the organisation too."
        )
    return SignedIn(matches[0].id, matches[0].tenant_id, email)


__all__ = ["SignInError", "SignedIn", "check_password"]
