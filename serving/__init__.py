"""Model serving: continuous-batching engine, KAITO /chat + OpenAI API on Ray Serve, and `kaito up`.

Public surface (import the submodules; this package imports nothing heavy):
- `serving.app:build(args)`: the Ray Serve application builder (`contract.serveargs.ServeArgs`)
- `serving.engine.Engine`, `serving.scheduler.Scheduler`/`SamplingParams`: the engine and its IO-free core
- `serving.cli.main`: `kaito up`; `serving.cluster`: pod entrypoints (head / worker)
- the tiny preset itself is built by the `tinymodel` package (shared with tuning)
- `serving.facade.Facade`: what the HTTP API (serving/api.py) asks of a replica; `serving.service.Service`
  implements it over the engine
Errors: `serving.errors.ServingError` and subclasses.
"""
from .errors import ServingError
from .facade import Facade, Job, ModelCard

__all__ = ["Facade", "Job", "ModelCard", "ServingError"]
