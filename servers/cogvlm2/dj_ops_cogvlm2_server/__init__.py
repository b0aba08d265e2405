"""An OpenAI-compatible caption server for CogVLM2-Llama3-Caption (``THUDM/cogvlm2-llama3-caption``)
that runs in the model's own environment (transformers 4.42), apart from dj_ops.

``sampling`` is dj_ops' ``dj_ops/video/sampling.py`` itself (a link in the source tree, a copy in
the built wheel): pure numpy, so the frames picked here are those dj_ops' ``chat`` and ``base``
strategies pick, without importing dj_ops or its dependencies.
"""

__version__ = "0.1.0"
