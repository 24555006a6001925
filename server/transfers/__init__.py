"""Asynchronous transfers: requests and their checks, the job table, the worker
pool that runs them, and the share links a ``link`` transfer makes.

May import ``files``, ``guard``, ``identity``, ``audit``, ``storage`` and the shared
modules; never ``http``.
"""
