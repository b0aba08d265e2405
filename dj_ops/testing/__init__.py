"""Test helpers for dj_ops: tiny random-weight checkpoints of the real model architectures."""
