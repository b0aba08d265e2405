"""The merge pass's prompt: windows in time order, failed windows left out."""

from __future__ import annotations

import pytest

from dj_ops.captioning.merge import MERGE_INSTRUCTION, WindowCaption, merge_prompt


def test_windows_are_listed_in_time_order_with_their_times():
    prompt = merge_prompt([WindowCaption(8.0, 16.0, "The man\nsits."),
                           WindowCaption(0.0, 10.0, "A man walks in."),
                           WindowCaption(16.0, 20.5, "")])  # a failed window
    assert prompt == (f"{MERGE_INSTRUCTION}\n\n[0.0 s - 10.0 s] A man walks in.\n"
                      "[8.0 s - 16.0 s] The man sits.")


def test_nothing_to_merge_is_an_error():
    with pytest.raises(ValueError, match="no window"):
        merge_prompt([WindowCaption(0, 1, " ")])
