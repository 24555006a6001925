"""Dropline's sync engine and the Python SDK for the Dropline API.

No Qt and no server imports here: ``agent`` and ``bench`` use :mod:`sync.engine`,
integrators use :mod:`sync.client`.
"""
