"""The audit trail: the decision log (JSON lines, rotated) and the file writers under it."""
