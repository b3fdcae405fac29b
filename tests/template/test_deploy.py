"""The deployed stack's shape (template.yaml): Bedrock by IAM, upstream keys as parameters that turn
their channels on, the mock off unless asked, least-privilege DynamoDB actions checked against the
calls the gateway really makes, capacity and access-log parameters, and `make build`'s artifacts
(.pyc compiled, no package in both a function and the layer)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import yaml
from test_template import GATEWAY, ROOT, _CfnLoader, _table_resources

pytestmark = pytest.mark.template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)


def _gateway(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"][GATEWAY]["Properties"]


def _statements(template: dict[str, Any], function: str = GATEWAY) -> list[tuple[str | None, dict[str, Any]]]:
    """(condition, statement) of every explicit statement of a function's policies (``!If`` unwrapped)."""
    out = []
    for policy in template["Resources"][function]["Properties"]["Policies"]:
        condition = None
        if "Fn::If" in policy:
            condition, policy, other = policy["Fn::If"]
            assert other == {"Ref": "AWS::NoValue"}
        for st in policy.get("Statement", []):
            out.append((condition, st))
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


# ------------------------------------------------------------------ Bedrock


def test_gateway_may_converse_with_bedrock_models_and_profiles(template):
    [(condition, st)] = [(c, s) for c, s in _statements(template) if "bedrock:InvokeModel" in _as_list(s["Action"])]
    assert condition == "BedrockOn" and st["Effect"] == "Allow"
    assert set(st["Action"]) == {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
    resources = [r["Fn::Sub"] for r in st["Resource"]]
    assert "arn:${AWS::Partition}:bedrock:*::foundation-model/*" in resources
    assert "arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:inference-profile/*" in resources
    assert not any(r.endswith(":*") or r == "*" for r in resources), "scoped to models and profiles only"
    env = _gateway(template)["Environment"]["Variables"]
    assert env["PISCES_BEDROCK"] == {"Ref": "EnableBedrock"}
    assert template["Parameters"]["EnableBedrock"]["Default"] == "on"


# ------------------------------------------------------------------ upstream keys and the mock

KEY_PARAMETERS = {  # parameter -> the environment variable pisces.yaml's channel reads
    "OpenAIApiKey": "OPENAI_API_KEY",
    "AnthropicApiKey": "ANTHROPIC_API_KEY",
    "GeminiApiKey": "GEMINI_API_KEY",
    "DeepSeekApiKey": "DEEPSEEK_API_KEY",
}
CHANNEL_OF = {"OPENAI_API_KEY": "openai", "ANTHROPIC_API_KEY": "anthropic", "GEMINI_API_KEY": "gemini",
              "DEEPSEEK_API_KEY": "deepseek"}  # fmt: skip


def _deployed_env(template: dict[str, Any], **parameters: str) -> dict[str, str]:
    """The gateway's environment as CloudFormation would set it for these parameter values."""
    out = {}
    for name, value in _gateway(template)["Environment"]["Variables"].items():
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
            p = value["Ref"]
            out[name] = str(parameters.get(p, template["Parameters"][p].get("Default", "")))
        elif isinstance(value, str):
            out[name] = value
    return out


def _deployed_config(template, monkeypatch, **parameters: str):
    from pisces.config import load_config

    for name in [*KEY_PARAMETERS.values(), *(f"{v}_SECRET_ARN" for v in KEY_PARAMETERS.values()),
                 "PISCES_MOCK", "PISCES_BEDROCK"]:  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in _deployed_env(template, **parameters).items():
        if name.startswith(("PISCES_", "OPENAI", "ANTHROPIC", "GEMINI", "DEEPSEEK")):
            monkeypatch.setenv(name, value)
    return load_config(ROOT / "pisces.yaml")


@pytest.mark.parametrize(("parameter", "variable"), KEY_PARAMETERS.items())
def test_key_parameters_turn_their_channels_on(template, monkeypatch, parameter, variable):
    params = template["Parameters"]
    assert params[parameter]["NoEcho"] is True and params[parameter]["Default"] == ""
    arn_parameter = f"{parameter}SecretArn"
    env = _gateway(template)["Environment"]["Variables"]
    assert env[variable] == {"Ref": parameter} and env[f"{variable}_SECRET_ARN"] == {"Ref": arn_parameter}
    channel = CHANNEL_OF[variable]
    assert channel not in {c.name for c in _deployed_config(template, monkeypatch).channels if c.enabled}
    on = _deployed_config(template, monkeypatch, **{parameter: "sk-given"})
    assert channel in {c.name for c in on.channels if c.enabled}
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:pisces-{channel}-AbCdEf"
    by_arn = _deployed_config(template, monkeypatch, **{arn_parameter: arn})
    assert channel in {c.name for c in by_arn.channels if c.enabled}
    # the function may read that secret (and only when it is given)
    [(_, st)] = [(c, s) for c, s in _statements(template) if s.get("Sid") == "UpstreamCredentials"]
    condition = next(c for c, s in template["Conditions"].items() if s == {"Fn::Not": [{"Fn::Equals": [
        {"Ref": arn_parameter}, ""]}]})  # fmt: skip
    assert {"Fn::If": [condition, {"Ref": arn_parameter}, {"Ref": "AWS::NoValue"}]} in st["Resource"]


def test_a_fresh_deploy_serves_bedrock_and_not_the_mock(template, monkeypatch):
    models = _deployed_config(template, monkeypatch).available_models()
    assert "mock-echo" not in models
    assert {"claude-sonnet-4-5", "nova-pro", "llama-4-maverick", "deepseek-r1"} <= set(models)
    assert template["Parameters"]["EnableMock"]["Default"] == "off"
    with_mock = _deployed_config(template, monkeypatch, EnableMock="on").available_models()
    assert "mock-echo" in with_mock
    assert "nova-pro" not in _deployed_config(template, monkeypatch, EnableBedrock="off").available_models()


# ------------------------------------------------------------------ least privilege on the tables


def _allowed(template: dict[str, Any]) -> dict[str, set[str]]:
    """Resource (a table's logical id, or '<id>/index/<name>') -> the DynamoDB actions granted on it."""
    out: dict[str, set[str]] = {}
    for _, st in _statements(template):
        actions = [a for a in _as_list(st["Action"]) if a.startswith("dynamodb:")]
        if not actions:
            continue
        for r in _as_list(st["Resource"]):
            if "Fn::GetAtt" in r:
                name = r["Fn::GetAtt"].split(".")[0]
            else:
                name = r["Fn::Sub"].replace("${", "").replace(".Arn}", "")
            out.setdefault(name, set()).update(actions)
    return {k: v for k, v in out.items() if v}


FORBIDDEN = {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteTable",
             "dynamodb:PutItem", "dynamodb:*"}  # fmt: skip


def test_gateway_has_no_scan_delete_or_batch_on_keys_and_usage(template):
    resources = _table_resources(template)
    allowed = _allowed(template)
    assert not allowed[resources["keys"]] & FORBIDDEN  # a key is read and counted, never made or removed
    assert not allowed[resources["usage"]] & (FORBIDDEN - {"dynamodb:PutItem"})  # a record is written once
    assert "dynamodb:Scan" not in set().union(*allowed.values())


def test_gateway_dynamodb_actions_are_the_ones_it_calls(template, gateway, clients):
    """Every DynamoDB call the gateway makes on its usual roads (a chat, a stream, an Idempotency-Key
    and its replay, a failed upstream, /v1/usage, a stored Response read back and deleted) is granted by
    the template, and every grant is used."""
    from pisces.store.schema import table_name

    resources = _table_resources(template)
    logical = {table_name(t): resources[t] for t in resources}
    calls: set[tuple[str, str]] = set()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        op = model.name
        if op == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, spec),) = item.items()
                action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(kind, kind + "Item")
                calls.add((logical[spec["TableName"]], f"dynamodb:{action}"))
            return
        target = logical.get(params.get("TableName", ""), params.get("TableName", "?"))
        if params.get("IndexName"):
            target += f"/index/{params['IndexName']}"
        calls.add((target, f"dynamodb:{op}"))

    on_loop: set[str] = set()

    db = gateway.app.state.gateway.db
    to_dynamo = db.transport.exchange

    async def on_the_loop(method: str, url: str, headers: dict, body: bytes, timeouts: dict) -> object:
        op = headers["x-amz-target"].rsplit(".", 1)[-1]  # the hot path's calls, over dynamo_http
        on_loop.add(op)
        record(json.loads(body), SimpleNamespace(name=op))
        return await to_dynamo(method, url, headers, body, timeouts)

    key = gateway.new_key(name="least-privilege")  # the admin's work, not the gateway's
    events = gateway.store.client.meta.events
    events.register("before-parameter-build.dynamodb", record, unique_id="least-privilege")
    db.transport.exchange = on_the_loop  # type: ignore[method-assign]
    try:
        c = clients.openai(gateway.v1, key)
        ask = [{"role": "user", "content": "hi"}]
        c.chat.completions.create(model="mock-echo", messages=ask)
        list(c.chat.completions.create(model="gpt-fake", messages=ask, stream=True))
        for _ in range(2):
            c.chat.completions.create(model="mock-echo", messages=ask, extra_headers={"Idempotency-Key": f"lp-{key}"})
        with pytest.raises(openai.APIStatusError) as failed:
            c.chat.completions.create(model="fail-500", messages=ask, extra_headers={"Idempotency-Key": f"lp-f-{key}"})
        assert failed.value.status_code == 502
        assert httpx.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        own = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{gateway.url}/v1/usage/requests", headers=own).json()["data"]
        looked = httpx.get(f"{gateway.url}/v1/usage/requests", params={"request_id": listed[0]["request_id"]},
                           headers=own).json()["data"]  # fmt: skip
        assert looked == listed[:1]
        stored = c.responses.create(model="mock-echo", input="hi")
        assert c.responses.retrieve(stored.id).id == stored.id
        c.responses.delete(stored.id)
    finally:
        events.unregister("before-parameter-build.dynamodb", unique_id="least-privilege")
        del db.transport.exchange  # the class's method again
    assert {"GetItem", "UpdateItem", "TransactWriteItems"} <= on_loop  # the key, admission, settlement
    allowed = _allowed(template)
    denied = {(r, a) for r, a in calls if a not in allowed.get(r, set())}
    assert not denied, f"the gateway calls what template.yaml does not allow: {sorted(denied)}"
    unused = {(r, a) for r, acts in allowed.items() for a in acts} - calls
    # Powertools reads an idempotency record (GetItem) only when a conflicting put did not return it
    assert unused <= {(resources["idempotency"], "dynamodb:GetItem")}, f"granted, never called: {sorted(unused)}"


# ------------------------------------------------------------------ capacity, logs


def test_capacity_and_throttling_are_parameters(template):
    props = _gateway(template)
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "GatewayReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    [settings] = template["Resources"]["PiscesApi"]["Properties"]["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}


def test_stage_writes_access_logs_by_default(template):
    params, res = template["Parameters"], template["Resources"]
    assert params["ApiAccessLogs"]["Default"] == "create-role"
    setting = res["PiscesApi"]["Properties"]["AccessLogSetting"]["Fn::If"]
    assert setting[0] == "ApiAccessLogging" and "$context.requestId" in setting[1]["Format"]
    # the account's CloudWatch role is set before the log group the stage writes to, and outlives the stack
    assert res["ApiAccessLogGroupWithRole"]["DependsOn"] == "ApiGatewayAccount"
    assert res["ApiGatewayAccount"]["DeletionPolicy"] == "Retain"
    assert res["ApiGatewayLogRole"]["DeletionPolicy"] == "Retain"


def test_adapter_reports_gateway_faults_as_errors(template):
    assert _gateway(template)["Environment"]["Variables"]["AWS_LWA_ERROR_STATUS_CODES"] == "500"


def test_configuration_parameter_is_readable_by_the_gateway(template):
    [(condition, st)] = [(c, s) for c, s in _statements(template) if s.get("Sid") == "ConfigurationParameter"]
    assert condition == "HasConfigParameter" and st["Action"] == "ssm:GetParameter"
    assert st["Resource"]["Fn::Sub"].endswith(":parameter${ConfigParameterName}")
    env = _gateway(template)["Environment"]["Variables"]
    assert env["PISCES_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}


# ------------------------------------------------------------------ make build (slow: a minute or more)


def _packages(root: Path) -> set[str]:
    return {p.name.split("-")[0].lower().replace("_", "-") for p in root.glob("*.dist-info")}


@pytest.mark.skipif(not (ROOT / ".venv-sam" / "bin" / "sam").exists(), reason="make install-sam first")
def test_make_build_compiles_and_ships_each_package_once():
    py313 = sorted(Path.home().glob(".pyenv/versions/3.13*/bin"))
    if not py313:
        pytest.skip("sam build for python3.13 needs that interpreter (pyenv's)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env["SAM_CLI_TELEMETRY"] = "0"
    done = subprocess.run(["make", "build"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    build = ROOT / ".aws-sam" / "build"
    layer = build / "CoreLayer" / "python"
    sources = [p for p in layer.rglob("*.py")]
    compiled = {p.parent.parent / p.name.split(".")[0] for p in layer.rglob("__pycache__/*.cpython-313.pyc")}
    assert len(sources) > 500
    missing = [p for p in sources if p.with_suffix("") not in compiled]
    assert not missing, f"{len(missing)} modules without a cpython-313 .pyc, e.g. {missing[:3]}"
    assert all(p.name.endswith(".cpython-313.pyc") for p in layer.rglob("*.pyc")), "only Lambda's interpreter's"
    assert {"fastapi", "uvicorn", "pydantic", "boto3", "mangum", "aiohttp", "httptools", "orjson"} <= _packages(layer)
    assert (layer / "pisces" / "upstreams" / "bedrock.py").is_file()
    for function in ("GatewayFunction", "AdminFunction", "ReconcilerFunction"):
        shipped = _packages(build / function)
        assert not shipped & _packages(layer), f"{function} ships again what the layer has: {shipped}"
        assert not shipped, f"{function} ships packages of its own: {shipped}"


# ------------------------------------------------------------------ make deploy / logs / sync


def _make(tmp_path: Path, *targets: str) -> list[str]:
    """The sam commands `make` runs for ``targets`` in a copy of the repo's Makefile and samconfig.toml
    (sam replaced by echo, SAM CLI taken as installed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", "MAKEFLAGS")}
    out = subprocess.run(["make", "-s", *targets, "SAM=echo sam", "PY313="], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    return [line for line in out.splitlines() if line.startswith("sam ")]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "samconfig.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / ".venv-sam").mkdir()
    (tmp_path / ".venv-sam" / ".installed").touch()
    return tmp_path


def test_first_deploy_is_guided_then_from_samconfig(repo_copy):
    assert "region" not in (ROOT / "samconfig.toml").read_text().split("[default.deploy.parameters]")[1], (
        "no region in samconfig.toml: the first deploy asks, offering the AWS profile's"
    )
    assert _make(repo_copy, "deploy") == ["sam build", "sam deploy --guided"]
    # what `sam deploy --guided` saves
    config = repo_copy / "samconfig.toml"
    config.write_text(config.read_text() + 'region = "eu-west-3"\n')
    assert _make(repo_copy, "deploy") == ["sam build", "sam deploy"]
    assert _make(repo_copy, "deploy", "GUIDED=1") == ["sam build", "sam deploy --guided"]
    assert _make(repo_copy, "logs") == ["sam logs --stack-name pisces --region eu-west-3 --name GatewayFunction --tail"]
    assert _make(repo_copy, "sync") == ["sam sync --stack-name pisces --region eu-west-3 --watch"]


def test_without_samconfig_region_logs_use_the_profiles(repo_copy):
    assert _make(repo_copy, "logs", "STACK=mine") == ["sam logs --stack-name mine --name GatewayFunction --tail"]


# ------------------------------------------------------------------ the README's deploy section


def _deploy_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Deploying") : text.index("\n## ", text.index("## Deploying") + 1)]


def _commands(section: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


def test_readme_deploy_commands_are_the_repos(template, repo_copy):
    commands = _commands(_deploy_section())
    assert commands
    makefile_targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    for cmd in commands:
        words = cmd.split()
        assert words[0] != "sam", f"{cmd!r}: sam lives in .venv-sam (`.venv-sam/bin/sam`)"
        if words[0] == "make":
            assert words[1] in makefile_targets, f"{cmd!r}: no such make target"
            assert _make(repo_copy, words[1]), f"{cmd!r} runs no sam command"
        elif words[0] == ".venv-sam/bin/sam":
            assert words[1] in ("deploy", "build", "local", "logs", "sync", "validate"), cmd
            if "--parameter-overrides" in words:
                for pair in words[words.index("--parameter-overrides") + 1 :]:
                    name, _, value = pair.partition("=")
                    spec = template["Parameters"][name]  # KeyError: the README names a parameter the template lacks
                    if "AllowedValues" in spec:
                        assert value in spec["AllowedValues"], cmd
                    if "AllowedPattern" in spec:
                        assert re.fullmatch(spec["AllowedPattern"], value), cmd
        else:
            assert words[0] == "aws", f"{cmd!r}: a command the repo does not provide"
    samconfig = (ROOT / "samconfig.toml").read_text()
    assert "resolve_s3 = true" in samconfig and "CAPABILITY_IAM" in samconfig  # what a plain `sam deploy` needs


def test_readme_parameters_are_the_templates(template):
    table = [line for line in _deploy_section().splitlines() if line.startswith("| `")]
    named = {n for line in table for n in re.findall(r"`([A-Z][A-Za-z]+)`", line.split("|")[1])}
    assert named and named <= set(template["Parameters"]), sorted(named - set(template["Parameters"]))
    assert set(template["Parameters"]) - named <= {"LambdaAdapterLayerVersion", "LambdaAdapterLayerArn",
                                                   "ConfigCacheSeconds"}  # fmt: skip
    assert "buffer" in _deploy_section().lower()  # sam local start-api buffers streams: the README says so
