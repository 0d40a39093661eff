"""Newline-ended messages cut out of the chunks a stream is read in."""

from __future__ import annotations

from passgate.lines import LineSplitter


def test_a_line_cut_between_chunks_comes_out_whole_once_its_newline_arrives() -> None:
    lines = LineSplitter()
    assert lines.feed(b'["a",1]\n["b"') == [b'["a",1]']
    assert lines.rest == b'["b"'
    assert lines.feed(b",2]\n") == [b'["b",2]']
    assert lines.rest == b""


def test_a_chunk_may_end_several_lines_or_none() -> None:
    lines = LineSplitter()
    assert lines.feed(b"one\ntwo\nth") == [b"one", b"two"]
    assert lines.feed(b"r") == []
    assert lines.feed(b"ee\n\n") == [b"three", b""]
    assert lines.rest == b""
