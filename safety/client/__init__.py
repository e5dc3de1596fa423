"""The client of the decision service, with the wire protocol it shares with the server.

Lean on purpose: ``from safety import Client`` loads neither python-can, cantools,
cryptography nor the engine (a test and an import-linter contract keep it so).
"""
