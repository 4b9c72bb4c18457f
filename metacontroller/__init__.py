"""Metacontroller's v2 hook protocol as typed models, and an emulator of its reconcile semantics.

Public surface:
- `metacontroller.api`: the `Obj` alias, map keys, the request models and `decode` (the one
  decoding step of a hook request, errors naming the JSON path), the reply models.
- `metacontroller.apply`: the last-applied annotation (`as_last_applied`, `last_applied_children`)
  and the 3-way merge.
- `metacontroller.cluster.Cluster`: in-memory API store with generations and garbage collection.
- `metacontroller.emulator.CompositeControllerEmulator`: drives a hook server over HTTP.
- `metacontroller.standins`: Karpenter, Deployment and Job controller stand-ins.
- `metacontroller.world.World`: all of the above in rounds.
Imports only the standard library and pydantic.
"""

__all__: list[str] = []
