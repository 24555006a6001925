"""The Dropline agent: the background service that runs the sync engine for a user.

Configuration and IT policy, credentials, sign-in, the control socket, the CLI
and logs; it imports the engine (``sync``) but never the server or the tray.
"""
