"""Names of the internal columns the stages hand each other, defined once.

They start with ``__`` so no source header can collide with them (a header that does is refused).
"""

ROW = "__row"  # the source row number (1 = the first data row), kept through every stage
KEY = "__key"  # the contact's identity (normalised email or userId)
KEY_HASH = "__key_hash"  # a 64-bit hash of KEY, where a stage has computed it
REASON = "__reason"  # why a row was rejected
HASH = "__hash"  # the content hash of a normalised row
STATE_HASH = "__state_hash"  # the content hash the state holds for a key
STATE_ROW = "__state_row"  # a row's contact's position in the StateIndex; null for a contact new to the state
STATUS = "__status"  # what the plan decided for a row
