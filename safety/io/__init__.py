"""CAN log input: every log format read into one frame type (:class:`safety.io.logs.Frame`).

The lowest stage: it knows files and frames, nothing about vehicles or policies.
"""
