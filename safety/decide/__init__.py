"""Deciding: the one decision pipeline (:mod:`.pipeline`), the evaluation of a compiled policy
(:mod:`.evaluate`), the run-time budgets and deferral queue (:mod:`.budgets`) and explanations
(:mod:`.explain`).  Never imports the policy workflow, the engine or anything that serves.
"""
