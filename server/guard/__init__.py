"""What a caller may do: attribute-based policies, the file checks and content
sniffing around file operations, rate limits, the brute-force defender, and the
SSRF guard on outbound HTTP. :class:`~dropline.server.guard.security.Security`
gathers them for the routes.

May import ``identity``, ``audit``, ``storage`` and the shared modules; never ``http``.
"""
