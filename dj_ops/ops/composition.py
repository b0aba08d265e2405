"""Which of the op's features combine: the features, the pairs refused when the op is built (with
the reason, the message the op raises), and everything else composes.

Every pair of features is decided: it works and a test shows it (a test marked
``@pytest.mark.composes(feature, ...)``, covering every pair among the features it names; one
mark per set of features the test combines), or it is refused here, with its reason.
``tests/composition_doc.py`` reads the markers from the tests themselves and this table, and
writes ``docs/composition.md``; ``tests/test_composition_matrix.py`` fails when a pair is
undecided or the page is stale.
"""

from __future__ import annotations

from itertools import combinations

# feature -> what turns it on
FEATURES: dict[str, str] = {
    "transformers": "`backend: transformers` (the default)",
    "vllm": "`backend: vllm` (in-process engine)",
    "openai": "`backend: openai` (an OpenAI-compatible server)",
    "random_any": "`caption_num` > 1, `keep_candidate_mode: random_any`",
    "similar_one_simhash": "`caption_num` > 1, `keep_candidate_mode: similar_one_simhash`",
    "all": "`caption_num` > 1, `keep_candidate_mode: all`",
    "consensus": "`caption_num` > 1, `keep_candidate_mode: consensus`",
    "caption_key": "captions in a field (`caption_key`)",
    "json": "`caption_format: json` (structured captions)",
    "windows": "`window_seconds` (windows and the merge)",
    "result_store": "`result_store` (resume)",
    "gate": "the quality gate with retries (`max_retries` > 0)",
    "frame_budget": "the frame budget (`max_visual_tokens`, or the engine's context)",
    "video_range": "`video_start` / `video_end`",
    "np": "`np` > 1 (worker processes)",
    "ray": "`executor_type: ray`",
}

# Features that are values of one parameter: one op has one of them, so they form no pair.
ALTERNATIVES: tuple[tuple[str, ...], ...] = (
    ("transformers", "vllm", "openai"),
    ("random_any", "similar_one_simhash", "all", "consensus"),
)

# Pairs the op refuses when it is built; the reason is the error message.
REFUSED: dict[frozenset[str], str] = {
    frozenset({"windows", "video_range"}): (
        "window_seconds covers the whole video; drop video_start/video_end or window_seconds"),
}


def refusal(first: str, second: str) -> str:
    """The reason the pair is refused (the op's error message)."""
    return REFUSED[frozenset({first, second})]


def alternatives(first: str, second: str) -> bool:
    """Whether the two are values of one parameter (no pair)."""
    return any(first in group and second in group for group in ALTERNATIVES)


def pairs() -> list[tuple[str, str]]:
    """Every pair of features to decide, in the order of :data:`FEATURES`."""
    return [(a, b) for a, b in combinations(FEATURES, 2) if not alternatives(a, b)]


def covered_pairs(features: tuple[str, ...]) -> set[frozenset[str]]:
    """The pairs a test that combines ``features`` shows working."""
    return {frozenset(pair) for pair in combinations(features, 2) if not alternatives(*pair)}
