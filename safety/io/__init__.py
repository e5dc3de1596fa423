"""CAN log input: every log format read into one frame type, one module per format (as python-can's ``can.io``).

:mod:`.logs` is the entry point (:func:`~safety.io.logs.read_log`, :func:`~safety.io.logs.log_format`);
:mod:`.candump` (candump -L, our own fast parser), :mod:`.csv` (python-can and panda CSV),
:mod:`.pythoncan` (ASC, BLF, TRC, MF4 through python-can's readers); :mod:`.frame` and :mod:`.files`
hold what they share.  The lowest stage: it knows files and frames, nothing about vehicles or policies.
"""
