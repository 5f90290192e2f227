"""A text generation's affinity key, and the replica a key goes to (no Ray needed)."""

from __future__ import annotations

from collections import Counter

import pytest

from modelyard.ray.affinity import PREFIX_CHARS, affinity_key, preferred

SYSTEM = {"role": "system", "content": "You are a pirate."}


def _chat(*turns: str, system: dict[str, str] = SYSTEM) -> list[dict[str, str]]:
    """A chat's messages as its client sends them at its last turn: every turn before it
    answered."""
    messages = [system]
    for i, turn in enumerate(turns):
        messages.append({"role": "user", "content": turn})
        if i < len(turns) - 1:
            messages.append({"role": "assistant", "content": f"answer {i}"})
    return messages


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_every_turn_of_a_chat_has_its_first_turns_key(path: str) -> None:
    turns = [affinity_key(path, {"messages": _chat(*"abc"[:n])}) for n in (1, 2, 3)]
    assert turns[0] is not None and len(set(turns)) == 1
    other_system = {"role": "system", "content": "You are a parrot."}
    assert affinity_key(path, {"messages": _chat("a", system=other_system)}) != turns[0]
    assert affinity_key(path, {"messages": _chat("another first question")}) != turns[0]


def test_openai_content_parts_read_as_their_text() -> None:
    parts = [{"type": "text", "text": "hi"}]
    as_parts = affinity_key(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": parts}]}
    )
    as_text = affinity_key(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert as_parts == as_text is not None


def test_a_plain_prompt_is_keyed_by_its_first_characters() -> None:
    preamble = "x" * PREFIX_CHARS
    first = affinity_key("/v1/completions", {"prompt": preamble + " question one"})
    assert first == affinity_key("/v1/completions", {"prompt": preamble + " question two"})
    assert first != affinity_key("/v1/completions", {"prompt": "y" + preamble})
    assert affinity_key("/generate", {"inputs": "hello"}) == affinity_key(
        "/generate_stream", {"inputs": "hello"}
    )
    ollama = affinity_key("/api/generate", {"prompt": "hello", "system": "be brief"})
    assert ollama != affinity_key("/api/generate", {"prompt": "hello"})
    kserve = affinity_key("/v2/models/tiny/versions/1/generate", {"text_input": "hello"})
    assert kserve == affinity_key("/v2/models/tiny/generate_stream", {"text_input": "hello"})
    assert affinity_key("/v1/completions", {"prompt": ["a", "b"]}) is not None
    assert affinity_key("/v1/completions", {"prompt": [1, 2, 3]}) is not None


def test_a_session_the_client_names_wins() -> None:
    chat = {"messages": _chat("a"), "user": "alice"}
    by_user = affinity_key("/v1/chat/completions", chat)
    assert by_user == affinity_key("/v1/completions", {"prompt": "other", "user": "alice"})
    cache_key = {**chat, "prompt_cache_key": "c1"}
    assert affinity_key("/v1/chat/completions", cache_key) != by_user
    header = affinity_key("/v1/chat/completions", cache_key, session="s1")
    assert header == affinity_key("/api/generate", {"prompt": "z"}, session="s1")


def test_requests_that_are_not_text_generations_have_no_key() -> None:
    assert affinity_key("/v1/embeddings", {"input": "hello"}) is None
    assert affinity_key("/v2/models/mlp/infer", {"inputs": []}) is None
    assert affinity_key("/v2/models/tiny/generate", ["not", "an", "object"]) is None
    assert affinity_key("/v1/chat/completions", {"messages": []}) is None
    assert affinity_key("/v1/chat/completions", {"messages": "hi"}) is None
    assert affinity_key("/v1/completions", {}) is None


def test_a_key_always_goes_to_the_same_replica_whatever_their_order() -> None:
    replicas = ["r1", "r2", "r3"]
    key = str(affinity_key("/v1/completions", {"prompt": "hello"}))
    assert preferred(key, replicas) == preferred(key, reversed(replicas))
    assert preferred(key, []) is None


def test_keys_spread_and_a_replica_coming_or_going_moves_only_its_share() -> None:
    keys = [str(affinity_key("/v1/completions", {"prompt": f"chat {i}"})) for i in range(3000)]
    three = {key: preferred(key, ["r1", "r2", "r3"]) for key in keys}
    counts = Counter(three.values())
    assert all(800 < counts[r] < 1200 for r in ("r1", "r2", "r3")), counts
    # r3 goes: only its keys move
    two = {key: preferred(key, ["r1", "r2"]) for key in keys}
    moved = [key for key in keys if two[key] != three[key]]
    assert all(three[key] == "r3" for key in moved)
    # r4 comes: it takes about a quarter, all from the others, and nothing else moves
    four = {key: preferred(key, ["r1", "r2", "r3", "r4"]) for key in keys}
    moved = [key for key in keys if four[key] != three[key]]
    assert all(four[key] == "r4" for key in moved)
    assert 550 < len(moved) < 950
