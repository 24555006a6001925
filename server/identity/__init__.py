"""Who is calling: tenants, users, API keys, the OAuth 2.0 authorization server
and its sign-in pages' checks, JWT access tokens and their JWKS, and the TLS and
client-certificate details behind mTLS principals.

May import ``storage``, ``audit`` and the shared ``problems``; never ``http``.
"""
