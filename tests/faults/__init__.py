"""The fault campaign: a real server and real agents in processes of their own, faults
injected at chosen or seeded random points, and the invariants checked afterwards.

``python -m tests.faults.campaign`` runs it (``make faults``); ``test_campaign.py`` runs
a reduced campaign in CI. docs/reliability.md has the results and how to replay a seed.
"""
