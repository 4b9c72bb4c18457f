"""What the hooks emit and the runtime consumes, in one torch-free place.

Importable by `hooks`, `presets`, `serving`, `tuning` and `artifacts`; imports only the standard
library, pydantic and pyyaml. Modules (each with its `__all__`):

- `contract.workspace`: the Workspace API (`kaito.sh/v1alpha1`), its annotations and claim names;
- `contract.serveargs`, `contract.serveconfig`: the Serve application's arguments and config file;
- `contract.argv`, `contract.tuningjob`: the pod commands and the tuning Job interface;
- `contract.ports`, `contract.paths`: ports, the cache's env var and the OCI scheme;
- `contract.urlpolicy`: the one URL-safety policy;
- `contract.podstatus`: the pod condition the runtime sets for its adapters, and the names that let it;
- `contract.lora`: which LoRA adapters the serving engine serves (tuning checks it before training).
"""

__all__: list[str] = []
