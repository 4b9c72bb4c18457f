"""`resolve` and `mirror`: the two entry points that pick a transport for a source."""
from __future__ import annotations

import os
from pathlib import Path

from .cache import Cache
from .errors import ArtifactError, InvalidReference, NotFound
from .manifest import MODEL_ARTIFACT_TYPE
from .pull import materialize, pull
from .push import push
from .reference import HfReference, LocalSource, OciReference, parse_oci, parse_source


def resolve(
    source: str | os.PathLike,
    *,
    dest: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    docker_config: str | os.PathLike | None = None,
    insecure: bool | None = None,
    hf_token: str | None = None,
) -> Path:
    """Turn a source into a local directory of files.

    A local path is returned as is (or linked into `dest`). `oci://...`, bare image references and
    `hf://org/repo@rev` are fetched into the cache; the cache directory is returned, or the files
    are placed in `dest` (atomically, with the completion marker) and `dest` is returned.
    """
    parsed = parse_source(source)
    if isinstance(parsed, LocalSource):
        path = parsed.path.expanduser()
        if not path.exists():
            raise NotFound(f"not found: local path {path}")
        if dest is None:
            return path.resolve()
        if not path.is_dir():
            raise ArtifactError(f"local source {path} is not a directory")
        # A copy: the source is the user's, and hardlinks would let edits in dest reach it.
        return materialize(path.resolve(), Path(dest), {"source": str(path.resolve()), "digest": ""}, copy=True)
    if isinstance(parsed, OciReference):
        return pull(parsed, dest, cache_dir=cache_dir, docker_config=docker_config, insecure=insecure).path
    from .hf import fetch_hf

    tree = fetch_hf(parsed, Cache(cache_dir), hf_token=hf_token)
    if dest is None:
        return tree
    return materialize(tree, Path(dest), {"source": str(parsed), "digest": tree.name})


def mirror(
    hf_source: str,
    oci_ref: str,
    *,
    docker_config: str | os.PathLike | None = None,
    insecure: bool | None = None,
    hf_token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    exclude: list[str] | None = None,
) -> str:
    """Copy a Hugging Face repo at a revision into an OCI registry as a model artifact; returns the digest."""
    from .hf import fetch_hf

    ref = parse_source(hf_source)
    if not isinstance(ref, HfReference):
        raise InvalidReference(f"mirror copies from hf://ORG/REPO[@REVISION], got {hf_source!r}")
    target = parse_oci(oci_ref)
    tree = fetch_hf(ref, Cache(cache_dir), hf_token=hf_token, ignore_patterns=exclude)
    commit = tree.name.split(".", 1)[0]
    annotations = {
        "org.opencontainers.image.source": f"hf://{ref.repo_id}@{commit}",
        "org.opencontainers.image.revision": commit,
    }
    return push(tree, target, docker_config=docker_config, insecure=insecure, artifact_type=MODEL_ARTIFACT_TYPE, annotations=annotations)
