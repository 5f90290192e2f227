"""HPACK decoding against RFC 7541's own examples (Appendix C), with and without Huffman coding,
and the literal encoding of the headers the server sends."""

from __future__ import annotations

import pytest

from modelyard.fronts.h2.hpack import Decoder, Encoder, HPACKError, encode_literal

REQUESTS = [
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
    [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ],
    [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ],
]
PLAIN = [  # C.3
    "828684410f7777772e6578616d706c652e636f6d",
    "828684be58086e6f2d6361636865",
    "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
]
HUFFMAN = [  # C.4
    "828684418cf1e3c2e5f23a6ba0ab90f4ff",
    "828684be5886a8eb10649cbf",
    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
]


@pytest.mark.parametrize("blocks", [PLAIN, HUFFMAN], ids=["plain", "huffman"])
def test_three_requests_share_one_dynamic_table(blocks: list[str]) -> None:
    decoder = Decoder()
    for block, want in zip(blocks, REQUESTS, strict=True):
        assert list(decoder.decode(bytes.fromhex(block))) == want
    assert list(decoder.table) == [
        ("custom-key", "custom-value"),
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ]
    assert decoder.size == 164


def test_a_size_update_evicts_and_a_small_table_keeps_the_newest() -> None:
    decoder = Decoder()
    decoder.decode(bytes.fromhex(PLAIN[0]))
    assert decoder.decode(b"\x20") == () and decoder.size == 0 and not decoder.table
    decoder.decode(b"\x3f\x1a")  # size update to 57: room for exactly one entry
    decoder.decode(bytes.fromhex(PLAIN[0]) + bytes.fromhex("400a637573746f6d2d6b657901" + "78"))
    assert list(decoder.table) == [("custom-key", "x")]


@pytest.mark.parametrize(
    "block",
    [
        "be",  # dynamic index 62 with an empty table
        "80",  # index 0
        "418c" + "f1e3",  # string runs past the block
        "4181" + "fe",  # Huffman padding of more than 7 bits' worth
        "3fe21f",  # size update (4097) over the 4096 the decoder allows
        "ff",  # integer cut short
    ],
)
def test_broken_blocks_raise(block: str) -> None:
    with pytest.raises(HPACKError):
        Decoder().decode(bytes.fromhex(block))


def test_literals_sent_decode_without_touching_the_table() -> None:
    long_value = "v" * 300  # a length past the 7-bit prefix
    block = encode_literal("grpc-status", "0") + encode_literal("grpc-message", long_value)
    decoder = Decoder()
    assert decoder.decode(block) == (("grpc-status", "0"), ("grpc-message", long_value))
    assert not decoder.table


def test_a_repeated_block_is_decoded_once_while_the_table_stays() -> None:
    decoder = Decoder()
    decoder.decode(bytes.fromhex(PLAIN[0]))  # adds :authority
    again = bytes.fromhex("828684be")  # the same request, all references
    first = decoder.decode(again)
    assert decoder.decode(again) is first
    decoder.decode(bytes.fromhex("400a637573746f6d2d6b657901" + "78"))  # the table changes
    assert decoder.decode(again) is not first  # index 62 now names another entry
    assert decoder.decode(again)[3] == ("custom-key", "x")


def test_the_encoder_indexes_repeated_fields_and_the_decoder_follows() -> None:
    headers = ((":status", "200"), ("content-type", "application/grpc"), ("x-once", "1"))
    trailers = (("grpc-status", "0"),)
    encoder = Encoder(frozenset({headers[1], trailers[0]}))
    decoder = Decoder()
    first = encoder.encode(headers) + encoder.encode(trailers)
    assert decoder.decode(first) == headers + trailers
    again = encoder.encode(headers)
    assert again[:2] == bytes([0x88, 0x80 | 63])  # :status static, content-type a reference
    assert encoder.encode(trailers) == bytes([0x80 | 62])
    assert decoder.decode(again) == headers
    assert decoder.decode(encoder.encode(trailers)) == trailers
    assert list(decoder.table) == list(reversed(encoder.inserted))


def test_the_encoder_follows_a_smaller_client_table() -> None:
    field = ("content-type", "application/grpc")
    encoder, decoder = Encoder(frozenset({field})), Decoder()
    decoder.decode(encoder.encode((field,)))
    encoder.resize(0)  # the client's SETTINGS_HEADER_TABLE_SIZE
    decoder.max_size = 0
    block = encoder.encode((field,))
    assert block[:2] == b"\x20\x20"  # size updates first: the table empties
    assert decoder.decode(block) == (field,) and not decoder.table
    assert decoder.decode(encoder.encode((field,))) == (field,)
