"""Getting bytes in: tus upload sessions, staged bytes on disk, batch uploads of
small files, and the last step that checks the hash and publishes a revision.

May import ``files``, ``storage``, ``identity`` and the shared ``problems``; never ``http``.
"""
