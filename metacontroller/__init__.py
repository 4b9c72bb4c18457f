"""Metacontroller's v2 hook protocol as typed models, and an emulator of its reconcile semantics.

Public surface:
- `metacontroller.api`: SyncRequest/SyncResponse/CustomizeRequest/CustomizeResponse, map keys.
- `metacontroller.cluster.Cluster`: in-memory API store with generations and garbage collection.
- `metacontroller.emulator.CompositeControllerEmulator`: drives a hook server over HTTP.
- `metacontroller.standins`: Karpenter, Deployment and Job controller stand-ins.
- `metacontroller.world.World`: all of the above in rounds.
Imports only the standard library and pydantic.
"""
