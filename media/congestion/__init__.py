"""Congestion control of a call's outgoing media.

The pure :class:`~media.congestion.controller.QualityController` turns network signals into a
quality rung; :mod:`media.congestion.loop` wires it to a peer connection through the RTCP
readers, transport-wide feedback, the pacer, the live encoder and the queue probe. The policy
(signal, action, why) is in ``docs/congestion.md``.
"""
