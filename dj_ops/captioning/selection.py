"""Pure candidate reduction: from ``caption_num`` candidates per video to the kept one(s).

One registry (``SELECTORS``) maps each ``keep_candidate_mode`` to a function
``(candidates, reference_text, rng) -> list[int]`` returning the indices of the kept
candidates: one index (one new sample per original) or all of them (``caption_num`` new
samples per original). Indices rather than strings, so the caller can report what it kept.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import simhash

from dj_ops.captioning.consensus import select_consensus

# Data-Juicer's op computes simhash with its DocumentSimhashDeduplicator (space tokenization,
# lowercase, shingles of 2 words); the same recipe is applied here to plain strings, so that
# selection is a pure function instead of an op constructed per call.
SIMHASH_WINDOW = 2

Selector = Callable[[Sequence[str], str, random.Random], list[int]]


def text_simhash(text: str, window: int = SIMHASH_WINDOW) -> int:
    """64-bit simhash of ``text`` over lower-cased word shingles of ``window`` words."""
    # Data-Juicer's own tokenization, imported here: importing data_juicer.ops loads the
    # plugins (this package among them), which a light import of the selectors must not do.
    from data_juicer.ops.common.helper_func import split_on_whitespace

    words = split_on_whitespace(text.lower())
    shingles = [" ".join(words[i : i + window]).encode() for i in range(len(words) - window + 1)]
    if not shingles:  # texts shorter than a shingle still get a hash of their words
        shingles = [" ".join(words).encode()]
    return int(simhash.compute([simhash.unsigned_hash(s) for s in shingles]))


def select_random_any(candidates: Sequence[str], reference: str, rng: random.Random) -> list[int]:
    """Keep one candidate chosen at random (from the op's seeded generator)."""
    return [rng.randrange(len(candidates))]


def select_similar_one_simhash(
    candidates: Sequence[str], reference: str, rng: random.Random
) -> list[int]:
    """Keep the candidate nearest (simhash Hamming distance) to the reference; first on ties."""
    reference_hash = text_simhash(reference)
    distances = [simhash.num_differing_bits(reference_hash, text_simhash(c)) for c in candidates]
    return [distances.index(min(distances))]


def select_all(candidates: Sequence[str], reference: str, rng: random.Random) -> list[int]:
    """Keep every candidate: the i-th new sample gets the i-th candidate of each video."""
    return list(range(len(candidates)))


SELECTORS: dict[str, Selector] = {
    "random_any": select_random_any,
    "similar_one_simhash": select_similar_one_simhash,
    "all": select_all,
    "consensus": select_consensus,
}


def keeps_every_candidate(mode: str) -> bool:
    """Whether ``mode`` keeps every candidate (one new sample, or one caption-field entry, per
    usable candidate) rather than one per video.

    >>> keeps_every_candidate("all"), keeps_every_candidate("random_any")
    (True, False)
    """
    return SELECTORS[mode] is select_all


def usable_candidates(mode: str, candidates_per_video: Sequence[Sequence[str]]
                      ) -> list[list[int]]:
    """Per video, the indices of the candidates that may be kept: the non-empty ones (an empty
    text is no caption: a model's empty answer, or a document that is not valid). For a mode
    that keeps every candidate, new sample ``s`` holds candidate ``s`` of each video, so only
    the indices usable for every video of the sample are kept (the others are left out, not
    the video). An empty list: the video has no usable caption.

    >>> usable_candidates("all", [["a", "", "c"], ["x", "y", "z"]])
    [[0, 2], [0, 2]]
    >>> usable_candidates("random_any", [["a", "", "c"], ["", "", ""]])
    [[0, 2], []]
    """
    usable = [[i for i, text in enumerate(texts) if text] for texts in candidates_per_video]
    if not keeps_every_candidate(mode) or not all(usable):
        return usable
    common = sorted(set.intersection(*(set(indices) for indices in usable)))
    return [list(common) for _ in usable]


def candidate_index(mode: str, index: int) -> int:
    """Which candidate a new sample holds (``index``, the kept candidate's), for provenance:
    -1 when ``mode`` keeps one per video."""
    return index if keeps_every_candidate(mode) else -1


def select_per_sample(
    mode: str,
    candidates_per_video: Sequence[Sequence[str]],
    references: Sequence[str],
    rng: random.Random,
) -> list[list[int]]:
    """Reduce each video's candidates, then regroup as one index list per new sample.

    :param mode: a key of ``SELECTORS``.
    :param candidates_per_video: ``candidates_per_video[v]`` are the candidates of video ``v``.
    :param references: the original chunk text of each video (for ``similar_one_simhash``).
    :param rng: the random generator for ``random_any``.
    :return: ``result[s][v]``: the index of the candidate of video ``v`` kept in new sample ``s``.
    """
    selector = SELECTORS[mode]
    kept = [selector(c, ref, rng) for c, ref in zip(candidates_per_video, references)]
    if not kept:
        return []
    return [list(per_sample) for per_sample in zip(*kept)]
