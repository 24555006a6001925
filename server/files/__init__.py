"""A user's files: entries and their names, content ranges, trash and revisions,
and the change feed every client follows.

May import ``storage``, ``identity`` (the principal), ``audit`` (the events outbox)
and the shared ``problems``; never ``http``.
"""
