"""Orchestration only: the session workflow, its contract and its policies.

Import `workflows.session.SessionWorkflow` explicitly; this package's modules do no
I/O so they are safe inside Temporal's workflow sandbox.
"""
