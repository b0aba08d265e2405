"""Chunk planning and caption insertion, with exact expected strings."""

import pytest
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens
from hypothesis import given
from hypothesis import strategies as st

from dj_ops.captioning.text import (
    TextLayoutError,
    chunk_reference_texts,
    insert_captions,
    plan_chunks,
    render_text,
    special_tokens_only,
)

V, E, IMG = SpecialTokens.video, SpecialTokens.eoc, SpecialTokens.image
SPECIAL = list(get_special_tokens().values())


def render(text, captions):
    chunks = plan_chunks(text, len(captions), V, E, SPECIAL)
    return render_text(chunks, captions, V, E)


def test_single_video_chunk_matches_data_juicer_layout():
    assert render(f"{V} a man walks {E}", ["cap"]) == f"{V} cap {E}"


def test_several_videos_in_one_chunk_keep_their_order():
    # Data-Juicer's helper would put both captions after the first token, reversed.
    assert render(f"{V}{V} two clips {E}", ["one", "two"]) == f"{V} one {V} two {E}"


def test_several_chunks_each_get_their_videos():
    text = f"{V} first {E}{V}{V} second {E}"
    assert render(text, ["a", "b", "c"]) == f"{V} a {E}{V} b {V} c {E}"


def test_unterminated_last_chunk_gets_no_eoc():
    assert render(f"{V} hi {E}{V} no end", ["a", "b"]) == f"{V} a {E}{V} b "


def test_chunk_without_video_keeps_its_special_tokens():
    text = f"{IMG} image only {E}{V} video {E}"
    assert render(text, ["x"]) == f"{IMG}{E}{V} x {E}"


def test_bare_video_list_is_one_chunk_with_all_videos():
    chunks = plan_chunks("no tokens here", 2, V, E, SPECIAL)
    assert len(chunks) == 1 and chunks[0].video_indices == (0, 1)
    assert render_text(chunks, ["a", "b"], V, E) == f"{V} a {V} b {E}"


def test_token_and_video_counts_that_disagree_raise_with_kind():
    with pytest.raises(TextLayoutError, match="2 video token.*3 video") as info:
        plan_chunks(f"{V}{V}", 3, V, E, SPECIAL)
    assert info.value.kind == "token_video_mismatch"


def test_insert_captions_rejects_wrong_count():
    with pytest.raises(TextLayoutError):
        insert_captions(f"{V}{V}", V, ["only one"])


def test_special_tokens_only_keeps_order():
    assert special_tokens_only(f"a{IMG}b{V}c{E}", SPECIAL) == f"{IMG}{V}{E}"


def test_reference_texts_are_chunk_texts_without_tokens():
    chunks = plan_chunks(f"{V} dog runs {E}{V} cat {E}", 2, V, E, SPECIAL)
    assert chunk_reference_texts(chunks, 2, SPECIAL) == ["dog runs", "cat"]


WORDS = st.text(alphabet="abc xyz.", max_size=8)
PIECE = st.lists(st.one_of(WORDS, st.just(V), st.just(IMG)), max_size=5).map("".join)


@given(st.lists(PIECE, min_size=1, max_size=5), st.booleans())
def test_generated_text_keeps_the_special_token_layout(pieces, trailing_eoc):
    text = E.join(pieces) + (E if trailing_eoc else "")
    n = text.count(V)
    captions = [f"caption{i}" for i in range(n)]
    if n == 0:
        return
    out = render(text, captions)
    assert special_tokens_only(out, SPECIAL) == special_tokens_only(text, SPECIAL)
    for caption in captions:
        assert f"{V} {caption} " in out
    assert out.index("caption0") < out.index(f"caption{n - 1}") or n == 1
