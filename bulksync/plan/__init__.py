"""Deciding: normalised rows, content hashes, the state index, actions, guards and the plan file.

Pure: no network, no writes to the state.
"""
