"""Node clients of the Responses API over real HTTP: openai-node (``client.responses``), the Vercel AI SDK's
default ``openai(model)`` provider (which speaks the Responses API) and openai-agents' default model."""

from __future__ import annotations

import json

import pytest

from support.node import clean_env, run_node


def _run(tmp_path, script: str) -> dict:
    r = run_node(script, clean_env(tmp_path / "home"))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def _head(gateway) -> str:
    return f"const baseURL = {json.dumps(gateway.v1)}; const apiKey = {json.dumps(gateway.key)};\n"


def test_openai_node_responses(tmp_path, gateway):
    out = _run(
        tmp_path,
        _head(gateway)
        + """
import OpenAI from 'openai';
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const plain = await client.responses.create({ model: 'mock-echo', input: 'Hello from node', instructions: 'brief' });
const stream = await client.responses.create({ model: 'mock-echo', input: 'streamed from node now', stream: true });
const types = []; let text = ''; let done = null;
for await (const ev of stream) {
  types.push(ev.type);
  if (ev.type === 'response.output_text.delta') text += ev.delta;
  if (ev.type === 'response.completed') done = ev.response;
}
const tool = { type: 'function', name: 'get_weather', parameters: { type: 'object',
  properties: { city: { type: 'string' } }, required: ['city'] } };
const call = await client.responses.create({ model: 'mock-echo', input: 'weather?', tools: [tool],
  tool_choice: 'required' });
const fc = call.output[0];
const next = await client.responses.create({ model: 'mock-echo', previous_response_id: call.id, tools: [tool],
  input: [{ type: 'function_call_output', call_id: fc.call_id, output: 'sunny' }] });
const got = await client.responses.retrieve(plain.id);
await client.responses.delete(plain.id);
let gone = null;
try { await client.responses.retrieve(plain.id); } catch (e) { gone = e.status; }
console.log(JSON.stringify({ plain: plain.output_text, pisces: plain.pisces, types, text,
  done_text: done.output[0].content[0].text, usage: done.usage, fc, next: next.output_text,
  got: got.output_text, gone }));
""",
    )
    assert out["plain"] == "Hello from node" and out["pisces"]["protocol"] == "openai-responses"
    assert out["types"][0] == "response.created" and out["types"][-1] == "response.completed"
    assert out["text"] == out["done_text"] == "streamed from node now" and out["usage"]["output_tokens"] > 0
    assert out["fc"]["type"] == "function_call" and json.loads(out["fc"]["arguments"]) == {"city": "mock"}
    assert out["next"] == "sunny" and out["got"] == "Hello from node" and out["gone"] == 404


def test_vercel_ai_sdk_default_openai_provider(tmp_path, gateway):
    """``openai(model)`` (not ``openai.chat(model)``) is the AI SDK's Responses API provider."""
    out = _run(
        tmp_path,
        _head(gateway)
        + """
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, stepCountIs } from 'ai';
import { z } from 'zod';
const openai = createOpenAI({ baseURL, apiKey });
const plain = await generateText({ model: openai('mock-echo'), system: 'brief', prompt: 'Hello from the AI SDK' });
const s = streamText({ model: openai('mock-echo'), prompt: 'streamed through the AI SDK' });
let streamed = ''; for await (const d of s.textStream) streamed += d;
const withTool = await generateText({
  model: openai('mock-echo'), prompt: 'weather in Paris?', stopWhen: stepCountIs(3),
  prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? 'required' : 'auto' }),
  tools: { get_weather: tool({ description: 'Weather for a city', inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}` }) },
});
const json = await generateText({ model: openai('mock-echo'), prompt: '{"city":"Paris"}',
  providerOptions: { openai: { strictJsonSchema: true } } });
console.log(JSON.stringify({ plain: plain.text, usage: plain.usage, meta: plain.providerMetadata,
  streamed, final: withTool.text, steps: withTool.steps.length,
  calls: withTool.steps[0].toolCalls.map(c => [c.toolName, c.input]), json: json.text }));
""",
    )
    assert out["plain"] == "Hello from the AI SDK"
    assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0
    assert out["meta"]["openai"]["responseId"].startswith("resp_")
    assert out["streamed"] == "streamed through the AI SDK"
    assert out["calls"] == [["get_weather", {"city": "mock"}]] and out["steps"] == 2
    assert out["final"] == "sunny in mock"


def test_openai_agents_default_model(tmp_path, gateway):
    out = _run(
        tmp_path,
        _head(gateway)
        + """
import OpenAI from 'openai';
import { Agent, run, tool, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } from '@openai/agents';
import { z } from 'zod';
setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey, maxRetries: 0 }));
setOpenAIAPI('responses');
setTracingDisabled(true);
const echo = new Agent({ name: 'Echo', instructions: 'Repeat the user.', model: 'mock-echo' });
const plain = await run(echo, 'Hello from an agent');
const streamed = await run(echo, 'streamed agent words', { stream: true });
let text = ''; for await (const ev of streamed.toTextStream()) text += ev;
await streamed.completed;
const weather = tool({ name: 'get_weather', description: 'Weather for a city',
  parameters: z.object({ city: z.string() }), execute: async ({ city }) => `cloudy in ${city}` });
const toolAgent = new Agent({ name: 'Weather', instructions: 'Use the tool.', model: 'mock-echo', tools: [weather],
  modelSettings: { toolChoice: 'required' } });
const withTool = await run(toolAgent, 'weather in Paris?');
console.log(JSON.stringify({ plain: plain.finalOutput, text, final: withTool.finalOutput,
  items: withTool.newItems.map(i => i.type), responses: withTool.rawResponses.length }));
""",
    )
    assert out["plain"] == "Hello from an agent"
    assert out["text"] == "streamed agent words"
    assert out["final"] == "cloudy in mock"
    assert out["items"][:2] == ["tool_call_item", "tool_call_output_item"] and out["responses"] == 2


@pytest.mark.parametrize("model", ["gpt-resp", "claude-fake"])
def test_ai_sdk_over_fake_upstreams(tmp_path, gateway, model):
    out = _run(
        tmp_path,
        _head(gateway)
        + f"""
import {{ createOpenAI }} from '@ai-sdk/openai';
import {{ streamText }} from 'ai';
const openai = createOpenAI({{ baseURL, apiKey }});
const s = streamText({{ model: openai({json.dumps(model)}), prompt: 'over a fake' }});
let text = ''; for await (const d of s.textStream) text += d;
console.log(JSON.stringify({{ text, reasoning: await s.reasoningText, usage: await s.usage }}));
""",
    )
    assert out["text"].endswith("over a fake") and out["usage"]["outputTokens"] > 0
