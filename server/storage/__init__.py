"""Where state lives: the database engine, the schema and its migrations, the blob
store and encryption at rest.

Imports no domain room: every other room builds on it.
"""
