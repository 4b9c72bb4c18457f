"""The hooks' pure core: the two syncs, the children builders, status, validation and the route table.

No IO: every function takes the decoded request (and the settings, and "now") and returns a reply
dict. `hooks.core.routes.answer` is the one way in, for the Flask shell and the in-process transport.
"""

__all__: list[str] = []
