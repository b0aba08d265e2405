"""A stand-in for CogVLM2-Llama3-Caption's remote code, for tests: its two files
(``configuration_cogvlm.py``, ``modeling_cogvlm.py``, named as the real ones) are copied into a
tiny random-weight checkpoint by ``build_checkpoint.py``, which runs in the CogVLM2 server's
environment (transformers 4.42), never in dj_ops' own. Nothing here is imported by dj_ops."""
