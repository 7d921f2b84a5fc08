"""The avatar as a live stream: ``avatar-rtc stream`` and what ``avatarsrc`` plays.

``engine`` runs a stream's turns on its timeline with the call's stages; ``control`` is its
JSON-lines control socket; ``source`` puts both on a thread for the GStreamer element;
``cli`` is the command. ``plugin/python/avatarsrc.py`` is the plugin file for
``gst-launch-1.0``. See docs/streaming.md.
"""
