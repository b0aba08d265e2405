"""Benchmarks of ``vlm_video_captioning_mapper`` against a sequential baseline run in the same
process (scripts, not tests). ``python -m bench.report`` runs the CPU benchmarks and rewrites
``bench/results/`` and ``docs/performance.md``; ``python -m bench.gpu --device cuda`` is the GPU
benchmark."""
