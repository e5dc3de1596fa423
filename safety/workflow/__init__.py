"""The policy workflow, for the people who write and review policies: lint and the whole-space
analysis, comparison of two policies, policy tests and the simulated car they run on.
"""
