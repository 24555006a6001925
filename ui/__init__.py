"""The Dropline tray app (PySide6): status, transfers, history, issues, sign-in and
settings. It talks to the agent only over the control socket (``dropline.agent.control``).
"""
