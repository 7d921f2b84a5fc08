"""Signaling and the call runtime, in three roles and the composition between them.

- :mod:`signaling.server`: the aiohttp application (offer/answer, control socket, auth,
  access guard, health), its logging and request parsing.
- :mod:`signaling.call`: one live call: the Session, its reply turns, early ASR, the
  supervised renderer and the typed control events.
- :mod:`signaling.stages`: the configuration turned into the stages (ASR, dialogue, TTS,
  renderer) that every call of the process shares.
- :mod:`signaling.client`: callers of the server: the headless recording bot and the load
  generator. Nothing in the server imports them.

At the top sit what the roles share: the ``avatar-rtc`` command (:mod:`signaling.cli`), the
settings model (:mod:`signaling.config`), ICE helpers and the Prometheus metrics.
"""
