"""Replay: a recorded log through the engine, as a timeline of states and probe decisions.
"""
