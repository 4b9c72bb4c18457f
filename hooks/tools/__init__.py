"""Command-line tools over the core: `kaito render` (an emulated cluster), `kaito validate`, `kaito gen-crds`."""

__all__: list[str] = []
