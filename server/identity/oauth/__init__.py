"""OAuth 2.0 authorization server: storage, Authlib glue, sign-in forms and the JWT check."""

from __future__ import annotations

from dropline.server.identity.oauth.server import DroplineAuthorizationServer, audience
from dropline.server.identity.oauth.store import FIRST_PARTY_CLIENT, OAuthStore

__all__ = ["FIRST_PARTY_CLIENT", "DroplineAuthorizationServer", "OAuthStore", "audience"]
