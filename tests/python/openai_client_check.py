"""Drive `chainlog mock` with the official OpenAI Python client.

The client (pinned in requirements-openai.txt) is the judge of the mock's
wire format: every check below goes through the client's own request
building, response models, SSE decoding and error mapping, and then asserts
on what a user of the client would see.

Usage: python openai_client_check.py BASE_URL
       (or CHAINLOG_MOCK_BASE_URL=http://127.0.0.1:PORT/v1)

Prints one line per check (`PASS name: detail` / `FAIL name: error`), runs
every check even after a failure, and exits 1 naming the failed checks.
Run by tests/it/mock_python.rs.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from typing import Any, Callable, Literal

import jsonschema
import openai
from pydantic import BaseModel

MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}

# A second tool, so that a forced choice is a real choice.
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string"}},
            "required": ["tz"],
            "additionalProperties": False,
        },
    },
}

TOOLS = [TIME_TOOL, WEATHER_TOOL]
TOOL_SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string"},
        "paid": {"type": "boolean"},
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "note": {"type": ["string", "null"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer"},
                },
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["invoice_id", "paid", "total", "currency", "note", "lines"],
    "additionalProperties": False,
}


class CalendarEvent(BaseModel):
    """The structured-output model for `chat.completions.parse`."""

    name: str
    day: Literal["mon", "tue", "wed", "thu", "fri"]
    attendees: list[str]
    duration_minutes: int
    confirmed: bool


def user(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": text},
    ]


def validate(instance: Any, schema: dict[str, Any], what: str) -> None:
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(instance),
        key=lambda e: list(e.path),
    )
    assert not errors, f"{what} {instance!r} is not valid for its schema: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors
    )


def check_usage(usage: Any, what: str) -> None:
    assert usage is not None, f"{what}: usage is missing"
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(getattr(usage, key), int), f"{what}: usage.{key} is {getattr(usage, key)!r}"
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, (
        f"{what}: usage.total_tokens {usage.total_tokens} != prompt_tokens "
        f"{usage.prompt_tokens} + completion_tokens {usage.completion_tokens}"
    )


def parse_arguments(arguments: Any, tool: str, what: str) -> dict[str, Any]:
    assert isinstance(arguments, str), f"{what}: arguments must be a JSON string, got {arguments!r}"
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as err:
        raise AssertionError(f"{what}: arguments are not JSON ({err}): {arguments!r}") from err
    assert isinstance(args, dict), f"{what}: arguments must be a JSON object, got {args!r}"
    validate(args, TOOL_SCHEMAS[tool], f"{what}: arguments of {tool}")
    return args


# --------------------------------------------------------------------------
# Chat completions


def chat_plain(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=user("Say hello in three words.")
    )
    ctype = raw.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"content-type is {ctype!r}"
    c = raw.parse()
    assert c.object == "chat.completion", f"object is {c.object!r}"
    assert c.id, "id is empty"
    assert isinstance(c.created, int) and c.created > 0, f"created is {c.created!r}"
    assert c.model, "model is empty"
    assert len(c.choices) == 1, f"expected 1 choice, got {len(c.choices)}"
    choice = c.choices[0]
    assert choice.index == 0, f"choice.index is {choice.index}"
    assert choice.message.role == "assistant", f"role is {choice.message.role!r}"
    assert isinstance(choice.message.content, str) and choice.message.content.strip(), (
        f"content is {choice.message.content!r}"
    )
    assert choice.finish_reason == "stop", f"finish_reason is {choice.finish_reason!r}"
    assert not choice.message.tool_calls, f"unexpected tool_calls {choice.message.tool_calls!r}"
    check_usage(c.usage, "chat")

    again = client.chat.completions.create(model=MODEL, messages=user("Say hello in three words."))
    assert again.choices[0].message.content == choice.message.content, (
        "the same request gave different content: "
        f"{choice.message.content!r} vs {again.choices[0].message.content!r}"
    )
    return f"content={choice.message.content[:60]!r} usage={c.usage.prompt_tokens}+{c.usage.completion_tokens}"


def chat_stream(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=user("Count to five."),
        stream=True,
        stream_options={"include_usage": True},
    )
    ctype = raw.headers.get("content-type", "")
    assert ctype.startswith("text/event-stream"), f"content-type is {ctype!r}"
    chunks = list(raw.parse())  # ends only if the stream ends cleanly ([DONE])
    assert len(chunks) >= 3, f"expected role, content and usage chunks, got {len(chunks)}"
    ids = {ch.id for ch in chunks}
    assert len(ids) == 1 and "" not in ids, f"chunk ids differ or are empty: {ids}"
    for i, ch in enumerate(chunks):
        assert ch.object == "chat.completion.chunk", f"chunk {i}: object is {ch.object!r}"

    *body, last = chunks
    assert last.choices == [], f"last chunk must have empty choices, got {last.choices!r}"
    check_usage(last.usage, "last chunk")
    for i, ch in enumerate(body):
        assert ch.usage is None, f"chunk {i} (not last) carries usage {ch.usage!r}"
        assert len(ch.choices) == 1, f"chunk {i}: expected 1 choice, got {ch.choices!r}"

    first = body[0].choices[0].delta
    assert first.role == "assistant", f"first delta role is {first.role!r}"
    content = "".join(ch.choices[0].delta.content or "" for ch in body)
    assert content.strip(), "accumulated content is empty"
    content_chunks = sum(1 for ch in body if ch.choices[0].delta.content)
    finishes = [ch.choices[0].finish_reason for ch in body]
    assert finishes[-1] == "stop", f"finish_reason of the last choice chunk is {finishes[-1]!r}"
    assert all(f is None for f in finishes[:-1]), f"finish_reason set before the end: {finishes}"

    # The SDK's own accumulator must agree.
    with client.chat.completions.stream(
        model=MODEL, messages=user("Count to five."), stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == content, (
        f"stream helper content {final.choices[0].message.content!r} != {content!r}"
    )

    # The SDK stops quietly when the connection closes early, so read the
    # raw SSE lines to see the stream end with `data: [DONE]`.
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=user("Count to five."), stream=True
    ) as response:
        data = [line for line in response.iter_lines() if line.startswith("data:")]
    assert data and data[-1].strip() == "data: [DONE]", f"stream does not end with data: [DONE]: {data[-2:]}"
    return f"{len(chunks)} chunks ({content_chunks} with content), content={content[:60]!r}"


def chat_forced_tool(client: openai.OpenAI) -> str:
    c = client.chat.completions.create(
        model=MODEL,
        messages=user("What's the weather in Paris for the next 3 days?"),
        tools=TOOLS,
        tool_choice=FORCE_WEATHER,
    )
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls", f"finish_reason is {choice.finish_reason!r}"
    calls = choice.message.tool_calls
    assert calls, f"no tool_calls in message {choice.message!r}"
    for call in calls:
        assert call.type == "function", f"tool call type is {call.type!r}"
        assert call.id, "tool call id is empty"
        assert call.function.name == "get_weather", f"forced get_weather, got {call.function.name!r}"
        parse_arguments(call.function.arguments, "get_weather", "forced tool call")
    check_usage(c.usage, "tool call")
    return f"{len(calls)} call(s), arguments={calls[0].function.arguments}"


def chat_required_tool(client: openai.OpenAI) -> str:
    c = client.chat.completions.create(
        model=MODEL, messages=user("What time is it in Tokyo?"), tools=TOOLS, tool_choice="required"
    )
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls", f"finish_reason is {choice.finish_reason!r}"
    calls = choice.message.tool_calls
    assert calls, f"no tool_calls in message {choice.message!r}"
    for call in calls:
        assert call.function.name in TOOL_SCHEMAS, f"unknown tool {call.function.name!r}"
        parse_arguments(call.function.arguments, call.function.name, "required tool call")
    return f"{calls[0].function.name}({calls[0].function.arguments})"


def chat_forced_tool_stream(client: openai.OpenAI) -> str:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("What's the weather in Paris for the next 3 days?"),
        tools=TOOLS,
        tool_choice=FORCE_WEATHER,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, Any]] = {}
    fragments = 0
    finish = None
    for chunk in stream:
        if not chunk.choices:
            check_usage(chunk.usage, "usage chunk")
            continue
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            assert finish is None, f"second finish_reason {choice.finish_reason!r}"
            finish = choice.finish_reason
        for tc in choice.delta.tool_calls or []:
            fragments += 1
            fn = tc.function
            if tc.index not in calls:
                assert tc.id, f"first fragment of tool call {tc.index} has no id: {tc!r}"
                assert fn is not None and fn.name, f"first fragment of {tc.index} has no name: {tc!r}"
                assert tc.type in (None, "function"), f"tool call type is {tc.type!r}"
                calls[tc.index] = {"id": tc.id, "name": fn.name, "arguments": fn.arguments or ""}
            else:
                assert tc.id is None, f"later fragment of tool call {tc.index} repeats id: {tc!r}"
                assert fn is None or fn.name is None, (
                    f"later fragment of tool call {tc.index} repeats name: {tc!r}"
                )
                calls[tc.index]["arguments"] += (fn.arguments or "") if fn else ""
    assert finish == "tool_calls", f"finish_reason is {finish!r}"
    assert calls, "no tool call fragments in the stream"
    for index, call in calls.items():
        assert call["name"] == "get_weather", f"call {index}: forced get_weather, got {call['name']!r}"
        parse_arguments(call["arguments"], "get_weather", f"streamed call {index}")

    # The SDK's own accumulator must agree.
    with client.chat.completions.stream(
        model=MODEL,
        messages=user("What's the weather in Paris for the next 3 days?"),
        tools=TOOLS,
        tool_choice=FORCE_WEATHER,
    ) as helper:
        final = helper.get_final_completion()
    helper_calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in helper_calls] == [
        (c["name"], c["arguments"]) for c in calls.values()
    ], f"stream helper assembled {helper_calls!r}, by hand {calls!r}"
    return f"{len(calls)} call(s) from {fragments} fragment(s), arguments={calls[0]['arguments']}"


def chat_tool_round_trip(client: openai.OpenAI) -> str:
    messages = user("What's the weather in Paris for the next 3 days?")
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice=FORCE_WEATHER
    )
    assistant = first.choices[0].message
    assert assistant.tool_calls, "the forced call returned no tool_calls"
    messages.append(
        {
            "role": "assistant",
            "content": assistant.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in assistant.tool_calls
            ],
        }
    )
    for call in assistant.tool_calls:
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": json.dumps({"temperature_c": 21, "conditions": "sunny"}),
            }
        )
    c = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    choice = c.choices[0]
    assert choice.finish_reason == "stop", f"finish_reason after the tool result is {choice.finish_reason!r}"
    assert not choice.message.tool_calls, f"called a tool again: {choice.message.tool_calls!r}"
    assert isinstance(choice.message.content, str) and choice.message.content.strip(), (
        f"content after the tool result is {choice.message.content!r}"
    )
    return f"reply={choice.message.content[:60]!r}"


def chat_json_object(client: openai.OpenAI) -> str:
    c = client.chat.completions.create(
        model=MODEL,
        messages=user("Reply with a JSON object describing a cat."),
        response_format={"type": "json_object"},
    )
    content = c.choices[0].message.content
    assert isinstance(content, str), f"content is {content!r}"
    value = json.loads(content)
    assert isinstance(value, dict), f"json_object content is not an object: {value!r}"
    return f"content={content[:60]}"


def chat_parse_pydantic(client: openai.OpenAI) -> str:
    c = client.chat.completions.parse(
        model=MODEL,
        messages=user("Alice and Bob meet on Friday for 30 minutes."),
        response_format=CalendarEvent,
    )
    message = c.choices[0].message
    assert message.refusal is None, f"refusal: {message.refusal!r}"
    assert isinstance(message.parsed, CalendarEvent), f"parsed is {message.parsed!r}"
    validate(json.loads(message.content), CalendarEvent.model_json_schema(), "parsed content")
    return f"parsed={message.parsed!r}"[:120]


def chat_json_schema_raw(client: openai.OpenAI) -> str:
    c = client.chat.completions.create(
        model=MODEL,
        messages=user("Make up an invoice."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "invoice", "strict": True, "schema": INVOICE_SCHEMA},
        },
    )
    assert c.choices[0].finish_reason == "stop", f"finish_reason is {c.choices[0].finish_reason!r}"
    content = c.choices[0].message.content
    assert isinstance(content, str), f"content is {content!r}"
    validate(json.loads(content), INVOICE_SCHEMA, "json_schema content")
    return f"content={content[:80]}"


# --------------------------------------------------------------------------
# Models, embeddings


def models_list(client: openai.OpenAI) -> str:
    models = list(client.models.list())
    assert models, "models.list() returned no models"
    for m in models:
        assert m.id, f"model without id: {m!r}"
        assert m.object == "model", f"{m.id}: object is {m.object!r}"
        assert isinstance(m.created, int), f"{m.id}: created is {m.created!r}"
        assert isinstance(m.owned_by, str), f"{m.id}: owned_by is {m.owned_by!r}"
    return "ids=" + ",".join(m.id for m in models)


def embeddings(client: openai.OpenAI) -> str:
    inputs = ["the quick brown fox", "jumps over the lazy dog"]

    # Default: the client asks for base64 and decodes float32 itself.
    b64 = client.embeddings.create(model=EMBEDDING_MODEL, input=inputs)
    assert b64.object == "list", f"object is {b64.object!r}"
    assert [d.index for d in b64.data] == [0, 1], f"indices are {[d.index for d in b64.data]}"
    for d in b64.data:
        assert d.object == "embedding", f"data object is {d.object!r}"
        assert isinstance(d.embedding, list) and d.embedding, f"embedding is {d.embedding!r}"
        assert all(isinstance(x, float) and math.isfinite(x) for x in d.embedding), "non-finite value"
    assert b64.usage.prompt_tokens > 0, f"usage is {b64.usage!r}"
    assert b64.usage.total_tokens >= b64.usage.prompt_tokens, f"usage is {b64.usage!r}"
    default_dims = len(b64.data[0].embedding)

    floats = client.embeddings.create(
        model=EMBEDDING_MODEL, input=inputs, encoding_format="float", dimensions=8
    )
    assert [len(d.embedding) for d in floats.data] == [8, 8], (
        f"dimensions=8 gave lengths {[len(d.embedding) for d in floats.data]}"
    )
    b64_8 = client.embeddings.create(model=EMBEDDING_MODEL, input=inputs, dimensions=8)
    assert [len(d.embedding) for d in b64_8.data] == [8, 8], (
        f"base64 with dimensions=8 decoded to lengths {[len(d.embedding) for d in b64_8.data]} "
        "(the client decodes little-endian float32)"
    )
    for f, b in zip(floats.data, b64_8.data):
        for x, y in zip(f.embedding, b.embedding):
            assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7), (
                f"float and base64 encodings disagree: {f.embedding} vs {b.embedding}"
            )
    return f"default dims={default_dims}, dimensions=8 ok, base64 == float"


# --------------------------------------------------------------------------
# Responses API


def responses_plain(client: openai.OpenAI) -> str:
    r = client.responses.create(model=MODEL, input="Say hello.", instructions="Be terse.")
    assert r.object == "response", f"object is {r.object!r}"
    assert r.id, "id is empty"
    assert r.status == "completed", f"status is {r.status!r}"
    assert r.output_text.strip(), f"output_text is {r.output_text!r}"
    assert r.usage is not None, "usage is missing"
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, f"usage is {r.usage!r}"
    return f"output_text={r.output_text[:60]!r}"


def responses_stream(client: openai.OpenAI) -> str:
    events = list(client.responses.create(model=MODEL, input="Say hello.", stream=True))
    types = [e.type for e in events]
    for required in ("response.created", "response.output_text.delta", "response.completed"):
        assert required in types, f"no {required} event in {types}"
    assert types[0] == "response.created", f"first event is {types[0]!r}"
    assert types[-1] == "response.completed", f"last event is {types[-1]!r}"
    seqs = [getattr(e, "sequence_number", None) for e in events]
    assert all(isinstance(s, int) for s in seqs), f"sequence_number missing: {seqs}"
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"sequence_number not increasing: {seqs}"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = events[-1].response
    assert completed.status == "completed", f"completed response status is {completed.status!r}"
    assert completed.output_text == text, f"deltas {text!r} != completed output_text {completed.output_text!r}"

    # The SDK's own accumulator must accept the event sequence too.
    with client.responses.stream(model=MODEL, input="Say hello.") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == text, f"stream helper output_text {final.output_text!r} != {text!r}"
    return f"{len(events)} events: {' '.join(dict.fromkeys(types))}"


# --------------------------------------------------------------------------
# Errors


def bad_request(client: openai.OpenAI) -> str:
    try:
        client.chat.completions.create(
            model=MODEL, messages=user("hi"), extra_body={"messages": "not a list"}
        )
    except openai.BadRequestError as err:
        assert err.status_code == 400, f"status is {err.status_code}"
        wire = err.response.json()
        assert isinstance(wire, dict) and isinstance(wire.get("error"), dict), f"body is {wire!r}"
        keys = {"message", "type", "param", "code"}
        assert keys <= wire["error"].keys(), f"error body lacks {keys - wire['error'].keys()}: {wire!r}"
        assert err.body == wire["error"], f"client's err.body {err.body!r} != wire error {wire['error']!r}"
        assert isinstance(wire["error"]["message"], str) and wire["error"]["message"], "empty message"
        assert isinstance(wire["error"]["type"], str), f"type is {wire['error']['type']!r}"
        for key in ("param", "code"):
            assert wire["error"][key] is None or isinstance(wire["error"][key], str), (
                f"{key} must be a string or null, got {wire['error'][key]!r}"
            )
        return f"400 {wire['error']}"
    except openai.APIStatusError as err:
        raise AssertionError(f"expected 400 BadRequestError, got {err.status_code}: {err.response.text}")
    raise AssertionError("a request with messages not a list was accepted")


CHECKS: list[tuple[str, Callable[[openai.OpenAI], str]]] = [
    ("chat_plain", chat_plain),
    ("chat_stream_include_usage", chat_stream),
    ("chat_forced_tool_call", chat_forced_tool),
    ("chat_required_tool_call", chat_required_tool),
    ("chat_forced_tool_call_stream", chat_forced_tool_stream),
    ("chat_tool_result_round_trip", chat_tool_round_trip),
    ("chat_json_object", chat_json_object),
    ("chat_parse_pydantic", chat_parse_pydantic),
    ("chat_json_schema_raw", chat_json_schema_raw),
    ("models_list", models_list),
    ("embeddings", embeddings),
    ("responses_plain", responses_plain),
    ("responses_stream", responses_stream),
    ("bad_request_400", bad_request),
]


def main() -> int:
    base_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CHAINLOG_MOCK_BASE_URL")
    if not base_url:
        print("usage: openai_client_check.py BASE_URL (or set CHAINLOG_MOCK_BASE_URL)", file=sys.stderr)
        return 2
    client = openai.OpenAI(
        base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0, timeout=20.0
    )
    print(f"openai {openai.__version__} against {base_url}")
    failed = []
    for name, check in CHECKS:
        try:
            detail = check(client)
        except Exception as err:  # noqa: BLE001 - every failure is reported by name
            failed.append(name)
            print(f"FAIL {name}: {type(err).__name__}: {err}")
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"PASS {name}: {detail}")
    print(f"{len(CHECKS) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("failed checks: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
