import pytest

from passgate.errors import GatewayError
from passgate.providers.base import Provider, split_base
from passgate.providers.mistral import MistralSpec
from passgate.proxy.paths import sub_path

PREFIX = b"/mistral"


@pytest.mark.parametrize(
    "raw",
    [
        b"/mistral/../health",
        b"/mistral/v1/../../key/generate",
        b"/mistral/%2e%2e/key/generate",
        b"/mistral/%2E%2E/key/generate",
        b"/mistral/v1/..%2fkey",
        b"/mistral/v1/..%2Fkey",
        b"/mistral/v1%5c..%5ckey",
        b"/mistral/v1\\..\\key",
        b"/mistral//evil.example/x",
        b"/mistral/v1//x",
        b"/mistral/./v1/x",
        b"/mistral/v1/x%00",
        b"/mistral/v1/%252e%252e/x",
        b"/mistral/",
        b"/mistral",
        b"/mistral/v1/files/.",
        b"/mistral/v1/files/..",
        b"/mistral/v1:/x//",
    ],
)
def test_path_tricks_are_refused(raw: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        sub_path(raw, PREFIX)
    assert info.value.status == 400
    assert info.value.code == "invalid_path"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/mistral/v1/chat/completions", b"/v1/chat/completions"),
        (b"/mistral/files/abc%20def/content", b"/files/abc%20def/content"),
        (b"/mistral/v1/models/ft:open-mistral-7b:abc", b"/v1/models/ft:open-mistral-7b:abc"),
        (b"/mistral/v1/files/report.v2.pdf", b"/v1/files/report.v2.pdf"),
        (b"/mistral/v1/files/...", b"/v1/files/..."),
        (b"/mistral/v1/files/", b"/v1/files/"),
        (b"/mistral/v2/prompts_x-1", b"/v2/prompts_x-1"),
    ],
)
def test_safe_paths_pass(raw: bytes, expected: bytes) -> None:
    assert sub_path(raw, PREFIX) == expected


@pytest.mark.parametrize(
    ("base", "sub", "expected"),
    [
        ("https://api.mistral.ai", b"/v1/chat/completions", b"/v1/chat/completions"),
        ("https://api.mistral.ai", b"/chat/completions", b"/v1/chat/completions"),
        ("https://api.mistral.ai/v1", b"/chat/completions", b"/v1/chat/completions"),
        ("https://api.mistral.ai/v1/", b"/v1/ocr", b"/v1/ocr"),
        ("https://api.mistral.ai", b"/v2/prompts", b"/v2/prompts"),
        ("http://host:8000/some/prefix", b"/v1/x", b"/some/prefix/v1/x"),
        ("http://host:8000/some/prefix/v1", b"/x", b"/some/prefix/v1/x"),
        ("https://api.mistral.ai", b"/version/x", b"/v1/version/x"),
        ("https://api.mistral.ai", b"/v12", b"/v12"),
        ("https://api.mistral.ai", b"/v1x/y", b"/v1/v1x/y"),
        ("https://api.mistral.ai", b"/v/y", b"/v1/v/y"),
    ],
)
def test_path_is_joined_onto_the_base(base: str, sub: bytes, expected: bytes) -> None:
    origin, base_path = split_base(base)
    provider = Provider(MistralSpec(), origin, base_path, None)
    assert provider.upstream_path(sub) == expected
    assert "/" not in origin.split("://", 1)[1]
