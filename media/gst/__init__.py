"""The avatar as a GStreamer element (``avatarsrc``) and the outputs of ``avatar-rtc stream``.

``runtime`` imports GStreamer (a clear error when it is missing); ``source`` declares what
the element plays; ``element`` is the element; ``pump`` paces the timeline into buffers;
``pipelines`` describes the RTMP, SRT, RTSP and HLS outputs; ``congestion`` lets SRT's and
RTMP's send-side signals drive the quality controller; ``output`` runs an output with
reconnects. Nothing here imports GStreamer until it is used. See docs/streaming.md.
"""
