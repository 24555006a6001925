"""Dropline's sync engine: journal, watcher, scanner, planner, transfers and folder loops.

No Qt and no server imports here. The agent and the benchmarks use
:mod:`dropline.sync.engine`; the engine talks to the server through
:mod:`dropline.sdk` like any other client.
"""
