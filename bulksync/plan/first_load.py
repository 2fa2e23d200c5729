"""A large first load through the API enrols everyone in Loops' "Contact added" loops: say so first.

Loops fires "Contact added" loops (welcome, onboarding) for contacts added through the API, and not
for contacts added by its CSV upload unless "Trigger loops" is ticked there. A nightly handful of
sign-ups is what those loops are for; thousands of long-standing subscribers are not.
"""

from __future__ import annotations

FIRST_LOAD_CREATES = 1_000  # more new contacts than this in one run looks like a first load


def first_load_warning(creates: int) -> str | None:
    """The warning for a run that would create ``creates`` contacts through the API, or None."""
    if creates <= FIRST_LOAD_CREATES:
        return None
    return (
        f"this run would create {creates:,} contacts through the API: every loop of yours triggered by "
        "\"Contact added\" (welcome, onboarding) starts for each of them. For a first load, 'bulksync export "
        "SOURCE --to DIR' writes files for Loops' CSV upload, which starts no loop, and 'bulksync state "
        "baseline' then records them (see the README's migration walkthrough)"
    )
