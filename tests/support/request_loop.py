"""A bounded loop of greedy completions (8 tokens, EOS ignored) for one model, run while something changes underneath it.

    with RequestLoop(base_url, "my-adapter") as loop:
        ...                       # push a new digest, edit the config
    assert loop.failures == []    # every request answered 200
"""
from __future__ import annotations

import threading

import httpx

PROMPT = "Kubernetes schedules"


class RequestLoop:
    """Greedy completions for one model, back to back, while a change happens: every answer must be a 200."""

    def __init__(self, client_base: str, model: str):
        self.model, self.base = model, client_base
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(base_url=self.base, timeout=60) as c:
            while not self._stop.is_set() and len(self.answers) + len(self.failures) < 2000:
                try:
                    r = c.post("/v1/completions", json={"model": self.model, "prompt": PROMPT,
                                                        "max_tokens": 8, "temperature": 0, "ignore_eos": True})
                    (self.answers if r.status_code == 200 else self.failures).append(
                        r.json()["choices"][0]["text"] if r.status_code == 200 else f"{r.status_code} {r.text}")
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)
