"""The control plane: Metacontroller hooks for Workspaces and the NodeProvisioner (no Kubernetes credentials).

Rooms (import-linter holds them, docs/architecture.md):

- `hooks.core`: pure, no IO. `routes` (the one route table and `answer`), `sync_workspace` and
  `nodeprovisioner` (the two syncs), `children` (Deployments, Service, ConfigMap, Job), `status`,
  `validation` and `rules` (admission), `nodes`, `api` (the NodeProvisioner API; the Workspace API
  is `contract.workspace`), `protocol` (the request models), `settings`, `errors`.
- `hooks.shell`: the IO shell. `app` (Flask, `gunicorn hooks.shell.app:app`), `gunicorn_conf`, `metrics`.
- `hooks.tools`: commands. `render` (`kaito render`, on the emulated cluster of `emulated`),
  `validate` (`kaito validate`), `crdgen` (`kaito gen-crds`).

Errors, each mapped once (`hooks.core.errors`: `http_status` for HTTP, `INVALID_SPEC` for conditions)::

    Exception
    ├── metacontroller.api.RequestError     the request breaks the v2 protocol    -> HTTP 400 (not JSON) / 422 (shape)
    ├── hooks.core.errors.HookError
    │   ├── SettingsError (ValueError)      a KAITO_* setting has no accepted value -> the server does not start
    │   └── SpecInvalid (ValueError)        a parent's spec fails validation      -> HTTP 200, condition reason
    │       └── WorkspaceInvalid            (FieldErrors of hooks.core.validation)   InvalidSpec, children kept as
    │                                                                                 last applied
    └── anything else                       a bug                                 -> HTTP 500: Metacontroller changes
                                                                                      nothing and retries

A sync reports an invalid spec in the status rather than raising (the reply must still keep the
children); `parse_workspace` raises WorkspaceInvalid for callers that want an exception.
"""

__all__: list[str] = []
