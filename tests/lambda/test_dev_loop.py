"""The dev loop after `make dev`: the README's CLI and admin lines run as written (after sourcing the
file make dev writes, or pasting its printed export line); the banner lists the disabled channels; a
model only they serve is a 404 saying so in each door's shape (the official SDKs); one short line per
request in the terminal; /favicon.ico; the CLI's hint without the endpoint; install progress; lint."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as genai_errors
from test_dev_ports import DEMO, TIMEOUT, _env, dev

from pisces.localaws import free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).absolute().parent
# No AWS credentials anywhere: what a fresh machine has (make dev's DynamoDB needs none)
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def _shell_env(home: Path) -> dict[str, str]:
    """A new terminal's environment: no venv on PATH, no AWS credentials or endpoint, no Pisces variables."""
    drop = ("AWS_", "PISCES_", "VIRTUAL_ENV", "PYTEST")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if Path(p).absolute() != BIN)
    return env | NO_AWS | {"HOME": str(home)}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`make dev`'s program on free ports, writing .pisces-dev.env into a fresh directory."""
    where = tmp_path_factory.mktemp("devloop")
    port, admin_port = free_port(), free_port()
    env = _env(PORT=str(port), ADMIN_PORT=str(admin_port), PISCES_DYNAMO_PORT=str(free_port()),
               PISCES_DEV_ENV_FILE=str(where / ".pisces-dev.env"))  # fmt: skip
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "PISCES_BEDROCK", "PISCES_ADMIN_TOKEN"):
        env.pop(name, None)
    log = where / "dev.log"
    with dev(env, log, port) as proc:
        yield {"dir": where, "log": log, "port": port, "admin_port": admin_port, "proc": proc,
               "url": f"http://127.0.0.1:{port}"}  # fmt: skip


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _readme_block(after: str) -> str:
    """The first ```sh block of the README after the line containing ``after``."""
    tail = README[README.index(after) :]
    return re.search(r"```sh\n(.*?)```", tail, re.S).group(1)


def test_readme_cli_lines_run_as_written(served):
    block = _readme_block("## Keys: the CLI and the admin API")
    assert block.startswith(". ./.pisces-dev.env\n") and "pisces keys list" in block
    env = _shell_env(served["dir"])
    create = block.splitlines()[1]
    made = _bash(f"set -e; . ./.pisces-dev.env; {create}", served["dir"], env)
    assert made.returncode == 0, made.stderr
    key_id = re.search(r"key_[0-9a-f]{16}", made.stdout).group(0)
    # the rest as written, with the placeholder key id made a real one
    rest = "\n".join(block.splitlines()[2:]).replace("key_0123456789abcdef", key_id)
    ran = _bash(f"set -e; . ./.pisces-dev.env; {rest}", served["dir"], env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "alice" in ran.stdout and "30.500000" in ran.stdout and "revoked" in ran.stdout  # 20 + 10.50


def test_readme_admin_curl_runs_as_written(served):
    block = _readme_block("Locally `make dev` serves it on `ADMIN_PORT`")
    script = f"set -e; . ./.pisces-dev.env; {block.strip()} -sS --fail-with-body"
    ran = _bash(script, served["dir"], _shell_env(served["dir"]))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"name":"bob"' in ran.stdout.replace(" ", "") and "pisces-" in ran.stdout


def test_the_printed_export_line_works_pasted(served):
    printed = served["log"].read_text()
    line = next(x.strip() for x in printed.splitlines() if x.strip().startswith("export PATH="))
    assert f"{BIN}:$PATH" in line and f"127.0.0.1:{served['admin_port']}" in line
    ran = _bash(f"{line}\npisces keys list", served["dir"], _shell_env(served["dir"]))
    assert ran.returncode == 0 and "demo" in ran.stdout, ran.stderr
    # the banner's admin curl has the real port and the token itself, not a variable the shell lacks
    admin = f"curl http://127.0.0.1:{served['admin_port']}/admin/keys"
    curl = next(x.strip() for x in printed.splitlines() if x.strip().startswith(admin))
    assert "$" not in curl
    assert _bash(curl + " --fail -sS", served["dir"], _shell_env(served["dir"])).returncode == 0


def test_banner_lists_disabled_channels_and_why(served):
    printed = served["log"].read_text()
    assert re.search(r"disabled +openai-embeddings, openai, openai-responses: set OPENAI_API_KEY\n", printed), printed
    assert "anthropic: set ANTHROPIC_API_KEY" in printed and "gemini: set GEMINI_API_KEY" in printed
    assert "bedrock: set PISCES_BEDROCK=on" in printed


def test_disabled_channel_is_a_404_in_each_doors_shape(served, clients):
    url = served["url"]
    want = "the channel `{}` serving it is disabled: set {}"
    with pytest.raises(openai.NotFoundError) as e:
        clients.openai(f"{url}/v1", DEMO).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert want.format("openai", "OPENAI_API_KEY") in e.value.message and e.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as e:
        clients.anthropic(url, DEMO).messages.create(
            model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert e.value.body["error"]["type"] == "not_found_error"
    assert want.format("anthropic", "ANTHROPIC_API_KEY") in e.value.body["error"]["message"]
    client = clients.gemini(url, DEMO, api_version="v1beta")
    with pytest.raises(genai_errors.ClientError) as e:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    assert want.format("gemini", "GEMINI_API_KEY") in e.value.message
    # a model no channel has at all keeps the plain message
    r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {DEMO}"},
                   json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]


def test_one_short_line_per_request_and_favicon(served):
    url = served["url"]
    marker = "X-Request-Id"
    rid = "devloop-line-0001"
    r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {DEMO}", marker: rid},
                   json={"model": "mock-echo", "messages": [{"role": "user", "content": "Hello"}]})  # fmt: skip
    assert r.status_code == 200
    icon = httpx.get(f"{url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert httpx.get(f"{url}/").status_code == 200 and httpx.head(f"{url}/console").status_code == 200
    cost = r.json()["pisces"]["cost"]
    # a line is written before the response's last byte: it is in the log once the client has the answer
    lines = served["log"].read_text().splitlines()
    line = next(x for x in lines if x.endswith(f"  {rid}"))
    assert re.fullmatch(rf"\d\d:\d\d:\d\d  200  /v1/chat/completions  mock-echo via mock  \d+ ms  "
                        rf"\d+ in / \d+ out  \$0\.{cost:06d}  {rid}", line), line  # fmt: skip
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d  200  /favicon.ico  \d+ ms  req_[0-9a-f]{32}", x) for x in lines)
    assert not any(x.startswith("{") for x in lines), "no JSON log lines in make dev's terminal"


def test_cli_without_endpoint_says_how_to_reach_make_dev(tmp_path):
    ran = subprocess.run([str(BIN / "pisces"), "keys", "list"], env=_shell_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert ran.returncode == 1
    assert "Unable to locate credentials" in ran.stderr
    assert ". ./.pisces-dev.env" in ran.stderr and "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8765" in ran.stderr
    assert "--stack" in ran.stderr


LOG_ONE = """
from pisces.pipeline.context import RequestContext
from pisces.pipeline.logs import record_request
ctx = RequestContext(request_id="req_logline", protocol="openai", path="/v1/models")
record_request(ctx, 200)
"""


@pytest.mark.parametrize("fmt", [None, "text"])
def test_json_lines_are_the_default_and_text_is_asked_for(fmt):
    env = {k: v for k, v in os.environ.items() if k != "PISCES_LOG_FORMAT"} | {"POWERTOOLS_METRICS_DISABLED": "true"}
    if fmt:
        env["PISCES_LOG_FORMAT"] = fmt
    out = subprocess.run([sys.executable, "-c", LOG_ONE], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    if fmt is None:
        import json

        fields = json.loads(line)
        assert fields["message"] == "request" and fields["path"] == "/v1/models" and fields["status"] == 200
    else:
        assert re.fullmatch(r"\d\d:\d\d:\d\d  200  /v1/models  \d+ ms  req_logline", line), line


def test_install_steps_say_what_they_do():
    dry = subprocess.run(["make", "-n", "-B", ".venv/bin/.installed", ".venv-sam/.installed"], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT).stdout  # fmt: skip
    lines = dry.splitlines()
    for target in ("uv pip install -e", "uv pip install aws-sam-cli"):
        i = next(n for n, x in enumerate(lines) if target in x)
        assert "-q" not in shlex.split(lines[i]), lines[i]  # uv's own progress shows
        assert any(x.startswith('echo "pisces: ') for x in lines[:i]), "a line says what is installed first"


def test_make_lint_fails_when_formatting_is_off(tmp_path):
    dry = subprocess.run(["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT).stdout
    step = next(x for x in dry.splitlines() if "ruff format --check" in x)
    assert "|| true" not in step
    bad = tmp_path / "bad.py"
    bad.write_text("x = {  'a':1 }\n")
    cmd = step.replace("--check .", f"--check {bad}").replace(".venv/bin/", f"{BIN}/")
    ran = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert ran.returncode == 1 and "formatting is off" in ran.stdout
    bad.write_text('x = {"a": 1}\n')
    assert subprocess.run(["bash", "-c", cmd], cwd=ROOT, timeout=TIMEOUT).returncode == 0
