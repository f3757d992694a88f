"""Build orchestrator for the Python container image family.

The stages, in the order data flows through them:
versions → render → plan → build → push → publish → summary.
"""
