"""Telling people: the per-row report, the summary JSON and what a run prints."""
