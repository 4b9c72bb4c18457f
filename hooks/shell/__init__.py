"""The hook server's IO shell: Flask (`gunicorn hooks.shell.app:app`), gunicorn settings, Prometheus metrics."""

__all__: list[str] = []
