"""The HTTP face of the server: the app factory, pure ASGI middleware, the routes,
problem+json responses, access logs and the metrics endpoint.

Routes are thin: they parse and check the HTTP parts, call into the domain rooms
(``files``, ``uploads``, ``identity``, ``guard``, ``audit``, ``transfers``,
``webhooks``, ``admin``) and turn their answers into responses. Nothing outside
this room and ``cli`` imports it.
"""
