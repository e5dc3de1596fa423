"""``drivegate serve``: the decision service for the head unit's other processes.

A local socket API (Unix domain socket, optionally TCP on loopback) speaking newline-delimited
JSON (``docs/protocol.md``): ``decide``, ``state``, ``status``, ``subscribe`` (push events),
``ping``.  CAN input from a python-can bus (``--bus``) or a log replayed onto an in-process
virtual bus (``--replay``); live time, so a silent bus fails closed.  SIGTERM drains and exits
0; SIGHUP reloads the policy (the old one stays on failure).

Modules: :mod:`safety.client.protocol` (wire format, shared with the client), :mod:`.clock` (live
time), :mod:`.inputs` (CAN input threads), :mod:`.events` (push events), :mod:`.peers` (socket
permissions, peer credentials), :mod:`.server` (asyncio server), the command line is
:mod:`safety.cli.serve`.
"""
