"""The parts of ``scripts/bench_render.py``, the MuseTalk render benchmark: ``paths`` (the
reference-style loop and ours), ``compare`` (both timed in turns, quality), ``report`` (the
table), ``load_test`` (simultaneous calls through the scheduler), ``explore`` (compile
variants), ``extras`` (optional measurements), ``compile_cache`` and ``common``."""
