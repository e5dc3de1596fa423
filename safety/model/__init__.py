"""The vocabulary every stage shares: requests (fields, values, validation), decisions and
outcomes, and the rule ids DriveGate itself puts in decisions.  Imports nothing heavy: the
client stands on it.
"""
