"""dj_ops: Data-Juicer operators for captioning videos with video-native VLMs.

Data-Juicer imports :mod:`dj_ops.ops` through the ``data_juicer.ops`` entry point, which
registers ``vlm_video_captioning_mapper`` in its operator registry.
"""

__version__ = "0.1.0"
