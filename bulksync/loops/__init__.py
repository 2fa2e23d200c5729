"""Talking to Loops: the HTTP client, throttle, retry policy, push pool and account.

The only package (with the emulator) that imports httpx and tenacity.
"""
