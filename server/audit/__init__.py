"""What happened: the hash-chained audit trail and its queries, and the events
outbox that domain code writes in its own transaction (webhooks fan it out).

May import ``storage`` only; every other room may import it.
"""
