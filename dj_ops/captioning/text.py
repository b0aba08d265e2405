"""Pure text logic: split a Data-Juicer sample text into chunks and write captions back.

Data-Juicer's convention: a text is a sequence of chunks ended by ``SpecialTokens.eoc``; each
video of the sample is referenced, in order, by one ``SpecialTokens.video`` token. A generated
sample keeps only the special tokens of the original (in order, chunk by chunk) and puts each
video's caption right after its token.

Written here rather than reused from ``data_juicer.utils.mm_utils.insert_texts_after_placeholders``
because that helper puts every caption after the *first* of several identical placeholders, in
reverse order. The caption delimiter (one space on each side) matches Data-Juicer's output.

Deliberate differences from Data-Juicer's op (both keep the special-token layout intact):
- chunks without videos keep their special tokens instead of being dropped;
- a trailing ``eoc`` is written only where the original had one;
- a text without any video token but with videos is captioned as one chunk holding them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CAPTION_DELIMITER = " "


class TextLayoutError(ValueError):
    """The text's video tokens and the sample's videos do not match."""

    kind = "token_video_mismatch"


@dataclass(frozen=True)
class Chunk:
    """One eoc-delimited chunk of a sample text.

    :param text: the chunk's original text, without its eoc.
    :param skeleton: the chunk's special tokens only, in order (captions go after video tokens).
    :param video_indices: indices, into the sample's video list, of this chunk's videos.
    :param terminated: whether the original chunk was ended by an eoc token.
    """

    text: str
    skeleton: str
    video_indices: tuple[int, ...]
    terminated: bool


def special_tokens_only(text: str, special_tokens: list[str]) -> str:
    """Keep only the special tokens of ``text``, in order (longest token matched first)."""
    if not special_tokens:
        return ""
    ordered = sorted(set(special_tokens), key=len, reverse=True)
    pattern = "|".join(re.escape(token) for token in ordered)
    return "".join(re.findall(pattern, text))


def plan_chunks(
    text: str, num_videos: int, video_token: str, eoc_token: str, special_tokens: list[str]
) -> list[Chunk]:
    """Split ``text`` into chunks and assign each chunk its videos.

    :param text: the sample text.
    :param num_videos: how many videos the sample lists.
    :param video_token: the video special token.
    :param eoc_token: the end-of-chunk special token.
    :param special_tokens: all special tokens to keep in the generated text.
    :raises TextLayoutError: when the number of video tokens is neither the number of videos nor
        zero (zero means a bare video list: one chunk holding all videos).
    """
    token_count = text.count(video_token)
    if token_count == 0 and num_videos > 0:
        skeleton = special_tokens_only(text, special_tokens) + video_token * num_videos
        return [Chunk(text, skeleton, tuple(range(num_videos)), terminated=True)]
    if token_count != num_videos:
        raise TextLayoutError(
            f"the text has {token_count} video token(s) ({video_token!r}) but the sample lists "
            f"{num_videos} video(s); each video needs exactly one token, in order"
        )
    pieces = text.split(eoc_token)
    chunks, offset = [], 0
    for position, piece in enumerate(pieces):
        terminated = position < len(pieces) - 1
        if not terminated and piece == "" and position > 0:
            break  # the text ended with an eoc: no trailing chunk
        count = piece.count(video_token)
        skeleton = special_tokens_only(piece, special_tokens)
        chunks.append(Chunk(piece, skeleton, tuple(range(offset, offset + count)), terminated))
        offset += count
    return chunks


def insert_captions(skeleton: str, video_token: str, captions: list[str]) -> str:
    """Put ``captions[i]`` after the i-th ``video_token`` of ``skeleton``.

    >>> insert_captions("<v><v>", "<v>", ["a", "b"])
    '<v> a <v> b '
    """
    parts = skeleton.split(video_token)
    if len(parts) - 1 != len(captions):
        raise TextLayoutError(
            f"{len(parts) - 1} video token(s) but {len(captions)} caption(s) to insert"
        )
    out = [parts[0]]
    for caption, rest in zip(captions, parts[1:]):
        out.append(f"{video_token}{CAPTION_DELIMITER}{caption}{CAPTION_DELIMITER}{rest}")
    return "".join(out)


def render_text(
    chunks: list[Chunk], captions: list[str], video_token: str, eoc_token: str
) -> str:
    """Build a generated sample's text: each chunk's skeleton with its videos' captions.

    :param chunks: the plan from :func:`plan_chunks`.
    :param captions: one caption per video of the sample, indexed like the sample's videos.
    """
    rendered = []
    for chunk in chunks:
        body = insert_captions(
            chunk.skeleton, video_token, [captions[i] for i in chunk.video_indices]
        )
        rendered.append(body + (eoc_token if chunk.terminated else ""))
    return "".join(rendered)


def chunk_reference_texts(
    chunks: list[Chunk], num_videos: int, special_tokens: list[str]
) -> list[str]:
    """The original text of each video's chunk with special tokens removed (for simhash)."""
    references = [""] * num_videos
    for chunk in chunks:
        plain = chunk.text
        for token in special_tokens:
            plain = plain.replace(token, "")
        for index in chunk.video_indices:
            references[index] = plain.strip()
    return references


def captions_after_video_tokens(
    text: str, video_token: str, special_tokens: list[str]
) -> list[str]:
    """Read captions back from a generated text: for each ``video_token``, in order, the text
    up to the next special token, stripped (the inverse of :func:`render_text`).

    >>> captions_after_video_tokens("<v> a cat <e><v> a dog", "<v>", ["<v>", "<e>"])
    ['a cat', 'a dog']
    """
    ordered = sorted(set(special_tokens) | {video_token}, key=len, reverse=True)
    parts = re.split("(" + "|".join(re.escape(token) for token in ordered) + ")", text)
    # re.split with one group alternates plain text (even indices) and tokens (odd indices).
    return [parts[i + 1].strip() for i in range(1, len(parts), 2) if parts[i] == video_token]
