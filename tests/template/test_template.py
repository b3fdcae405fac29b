"""template.yaml: SAM and cfn-lint validation, streaming and IAM settings, tables against the store's
schema, routes against the apps, and the sample events in events/."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.loops import thread_loop

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_BIN = ROOT / ".venv-sam" / "bin"
EVENT_FILES = sorted((ROOT / "events").glob("*.json"))

GATEWAY, ADMIN = "GatewayFunction", "AdminFunction"
CATCH_ALL = "/{proxy+}"
STREAM_TIMEOUT_MAX_MS = 900_000  # API Gateway's limit for a streamed integration (15 minutes)


# ------------------------------------------------------------------ loading the template


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt, !If...) as their long forms."""


def _short_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def _api_events(template: dict[str, Any], function: str) -> dict[str, dict[str, Any]]:
    events = template["Resources"][function]["Properties"].get("Events", {})
    return {name: e["Properties"] for name, e in events.items() if e["Type"] == "Api"}


def _routes(template: dict[str, Any], function: str, *, catch_all: bool = False) -> set[tuple[str, str]]:
    return {
        (p["Method"].upper(), p["Path"])
        for p in _api_events(template, function).values()
        if catch_all or p["Path"] != CATCH_ALL
    }


# ------------------------------------------------------------------ sam validate, cfn-lint


def _run_sam_tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = SAM_BIN / tool
    if not exe.exists():
        pytest.fail(f"{exe} is missing: run `make install-sam` (SAM CLI and cfn-lint live in .venv-sam)")
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        [str(exe), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_sam_validate_lint_passes():
    result = _run_sam_tool("sam", "validate", "--lint", "--template-file", str(TEMPLATE))
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"


def test_cfn_lint_passes_without_warnings():
    result = _run_sam_tool("cfn-lint", "template.yaml")
    assert result.returncode == 0, f"cfn-lint reported problems:\n{result.stdout}\n{result.stderr}"


# ------------------------------------------------------------------ streaming gateway, IAM admin


def test_every_api_event_uses_the_pisces_rest_api(template):
    for function in (GATEWAY, ADMIN):
        for name, props in _api_events(template, function).items():
            # Without RestApiId, SAM would create an implicit API with none of PiscesApi's settings.
            assert props.get("RestApiId") == {"Ref": "PiscesApi"}, f"{function}.{name}"


def test_every_gateway_event_streams(template):
    events = _api_events(template, GATEWAY)
    assert ("ANY", CATCH_ALL) in _routes(template, GATEWAY, catch_all=True), (
        f"the gateway needs ANY {CATCH_ALL} so unknown routes get its own 404, not API Gateway's"
    )
    lambda_timeout_ms = 1000 * template["Resources"][GATEWAY]["Properties"].get(
        "Timeout", template["Globals"]["Function"].get("Timeout", 3)
    )
    for name, props in events.items():
        # Exactly this value: SAM silently buffers on anything else.
        assert props.get("ResponseTransferMode") == "RESPONSE_STREAM", f"{GATEWAY}.{name} does not stream"
        timeout = props.get("TimeoutInMillis", 29_000)
        assert 29_000 <= timeout <= STREAM_TIMEOUT_MAX_MS, f"{GATEWAY}.{name}: TimeoutInMillis {timeout}"
        assert timeout <= lambda_timeout_ms, f"{GATEWAY}.{name}: the function times out before API Gateway"


def test_gateway_runs_behind_the_web_adapter_in_streaming_mode(template):
    props = template["Resources"][GATEWAY]["Properties"]
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert env["AWS_LWA_ERROR_STATUS_CODES"] == "500", "a gateway fault fails the invocation (Errors alarm)"
    assert env["PISCES_KEY_CACHE_SECONDS"] == {"Ref": "KeyCacheSeconds"}
    assert ("GET", "/healthz") in _routes(template, GATEWAY)
    run_sh = ROOT / props["CodeUri"] / props["Handler"]
    assert run_sh.is_file() and os.access(run_sh, os.X_OK), f"{run_sh} must exist and be executable"
    assert "${PORT" in run_sh.read_text()
    adapter = [layer for layer in props["Layers"] if "LambdaAdapterLayerArm64" in json.dumps(layer)]
    assert adapter, "the gateway needs the Lambda Web Adapter layer (arm64)"


def test_admin_events_are_iam_authorised_and_buffered(template):
    events = _api_events(template, ADMIN)
    assert events
    for name, props in events.items():
        assert "ResponseTransferMode" not in props, f"{ADMIN}.{name}: the Mangum handler answers buffered"
        assert (props.get("Auth") or {}).get("Authorizer") == "AWS_IAM", f"{ADMIN}.{name} is not IAM-authorised"
    api_auth = template["Resources"]["PiscesApi"]["Properties"].get("Auth") or {}
    assert "DefaultAuthorizer" not in api_auth, "the gateway authenticates its own keys: no default authorizer"


# ------------------------------------------------------------------ tables


def _table_resources(template: dict[str, Any]) -> dict[str, str]:
    """Logical table name -> template resource, through the environment variable the code reads."""
    from pisces.store.schema import TABLE_ENV

    env = template["Globals"]["Function"]["Environment"]["Variables"]
    out = {}
    for logical, (variable, _default) in TABLE_ENV.items():
        ref = env.get(variable)
        assert isinstance(ref, dict) and "Ref" in ref, f"Globals must set {variable} to !Ref <table>"
        out[logical] = ref["Ref"]
    return out


def _indexes(indexes: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in indexes or []}


def _layout(props: dict[str, Any], ttl_attribute: str | None) -> dict[str, Any]:
    return {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": sorted((a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]),
        "GlobalSecondaryIndexes": _indexes(props.get("GlobalSecondaryIndexes")),
        "LocalSecondaryIndexes": _indexes(props.get("LocalSecondaryIndexes")),
        "BillingMode": props.get("BillingMode"),
        "ttl_attribute": ttl_attribute,
    }


def test_tables_match_the_store_schema(template):
    from pisces.store.schema import TABLES

    resources = _table_resources(template)
    assert set(resources) == set(TABLES)
    assert set(resources.values()) == set(_resources(template, "AWS::DynamoDB::Table"))
    for logical, spec in TABLES.items():
        props = template["Resources"][resources[logical]]["Properties"]
        ttl = props.get("TimeToLiveSpecification") or {}
        declared = _layout(props, ttl.get("AttributeName") if ttl.get("Enabled") else None)
        assert declared == _layout(spec, spec.get("ttl_attribute")), f"{resources[logical]} != TABLES[{logical!r}]"


def test_tables_are_on_demand_encrypted_and_recoverable(template):
    tables = _resources(template, "AWS::DynamoDB::Table")
    assert tables
    for name, table in tables.items():
        props = table["Properties"]
        assert props.get("BillingMode") == "PAY_PER_REQUEST", name
        assert (props.get("SSESpecification") or {}).get("SSEEnabled") is True, name
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        assert pitr.get("PointInTimeRecoveryEnabled") is True, name


def test_keys_and_usage_survive_stack_deletion(template):
    resources = _table_resources(template)
    for logical in ("keys", "usage"):
        table = template["Resources"][resources[logical]]
        assert table.get("DeletionPolicy") == "Retain", logical
        assert table.get("UpdateReplacePolicy") == "Retain", logical


def test_functions_get_least_privilege_on_tables(template):
    resources = _table_resources(template)

    def grants(function: str) -> set[tuple[str, str]]:
        out = set()
        for policy in template["Resources"][function]["Properties"].get("Policies", []):
            for name, args in policy.items():
                if name.startswith("DynamoDB"):
                    out.add((name, args["TableName"]["Ref"]))
        return out

    # the gateway's are explicit statements, checked against the calls it makes (tests/template/test_deploy.py)
    assert grants(GATEWAY) == set()
    assert grants(ADMIN) == {
        ("DynamoDBCrudPolicy", resources["keys"]),
        ("DynamoDBReadPolicy", resources["usage"]),
    }


def test_reconciler_runs_on_a_schedule_with_least_privilege(template):
    """It scans keys for holds and releases each in a transaction (an UpdateItem on the key and a
    PutItem of the abandoned record): nothing more, on no other table."""
    resources = _table_resources(template)
    props = template["Resources"]["ReconcilerFunction"]["Properties"]
    assert props["Handler"] == "pisces_reconciler.handler.handler"
    assert (ROOT / props["CodeUri"] / "pisces_reconciler" / "handler.py").is_file()
    events = props["Events"].values()
    assert [e["Properties"]["ScheduleExpression"] for e in events if e["Type"] == "ScheduleV2"] == ["rate(5 minutes)"]
    granted: dict[str, set[str]] = {}
    for policy in props["Policies"]:
        assert set(policy) == {"Statement"}, "explicit statements only"
        for st in policy["Statement"]:
            table = st["Resource"]["Fn::GetAtt"].split(".")[0]  # !GetAtt KeysTable.Arn
            granted.setdefault(table, set()).update(st["Action"])
    assert granted == {
        resources["keys"]: {"dynamodb:Scan", "dynamodb:UpdateItem"},
        resources["usage"]: {"dynamodb:PutItem"},
    }
    # no hold is released while its request may still run: the age is past the gateway's timeout
    age = int(props["Environment"]["Variables"]["PISCES_HOLD_MAX_AGE_SECONDS"])
    assert age > template["Resources"][GATEWAY]["Properties"]["Timeout"]


# ------------------------------------------------------------------ routes in step with the apps


def _apigw_path(path: str) -> str:
    """FastAPI's ``{name:path}`` is API Gateway's greedy ``{name+}``; plain ``{name}`` is the same in both."""
    return re.sub(r"\{(\w+):path\}", r"{\1+}", path)


def _app_routes(app: Any) -> set[tuple[str, str]]:
    from starlette.routing import Route  # FastAPI's APIRoute (the admin's) is one too

    return {
        (method, _apigw_path(route.path))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods - {"OPTIONS"}  # HEAD too: API Gateway answers only the declared methods
    }


def _assert_same_routes(function: str, app_routes: set[tuple[str, str]], template_routes: set[tuple[str, str]]):
    def lines(routes: set[tuple[str, str]]) -> str:
        return "".join(f"\n    {m} {p}" for m, p in sorted(routes, key=lambda r: (r[1], r[0]))) or "\n    (none)"

    missing, extra = app_routes - template_routes, template_routes - app_routes
    assert not (missing or extra), (
        f"{function}: the app's routes and template.yaml's Api events differ"
        f"\n  served by the app, no Api event in template.yaml:{lines(missing)}"
        f"\n  Api event in template.yaml, not served by the app:{lines(extra)}"
    )


def test_gateway_routes_match_the_template(template, monkeypatch):
    monkeypatch.setenv("PISCES_CONFIG", str(ROOT / "pisces.yaml"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from pisces_gateway.app import create_app

    _assert_same_routes(GATEWAY, _app_routes(create_app()), _routes(template, GATEWAY))


def test_admin_routes_match_the_template(template, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with thread_loop():  # the import builds the Mangum handler, which wants the thread's loop
        from pisces_admin.app import app as admin_app
    _assert_same_routes(ADMIN, _app_routes(admin_app), _routes(template, ADMIN))


# ------------------------------------------------------------------ events/*.json

EVENT_KEYS = {
    "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
    "multiValueQueryStringParameters", "pathParameters", "stageVariables", "requestContext", "body",
    "isBase64Encoded",
}  # fmt: skip
REQUEST_CONTEXT_KEYS = {
    "resourcePath", "httpMethod", "path", "stage", "requestId", "identity", "accountId", "apiId", "protocol",
}  # fmt: skip


def _route_of(template: dict[str, Any], method: str, resource: str) -> str | None:
    for function in (GATEWAY, ADMIN):
        for route_method, path in _routes(template, function, catch_all=True):
            if path == resource and route_method in (method, "ANY"):
                return function
    return None


def test_every_route_has_a_sample_event(template):
    covered = {(e["httpMethod"], e["resource"]) for e in (json.loads(p.read_text()) for p in EVENT_FILES)}
    routes = _routes(template, GATEWAY) | _routes(template, ADMIN)
    assert routes <= covered, f"routes without an events/*.json sample: {sorted(routes - covered)}"


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_event_is_a_rest_proxy_event_for_a_template_route(template, path):
    event = json.loads(path.read_text())
    assert set(event) >= EVENT_KEYS, f"missing keys: {sorted(EVENT_KEYS - set(event))}"
    context = event["requestContext"]
    assert set(context) >= REQUEST_CONTEXT_KEYS, f"missing requestContext keys: {REQUEST_CONTEXT_KEYS - set(context)}"
    method, resource = event["httpMethod"], event["resource"]
    assert (context["httpMethod"], context["resourcePath"]) == (method, resource)
    assert context["path"] == f"/{context['stage']}{event['path']}"

    function = _route_of(template, method, resource)
    assert function, f"{method} {resource} is not a route of template.yaml"

    # The concrete path is the resource with the path parameters filled in.
    names = re.findall(r"\{(\w+)\+?\}", resource)
    params = event["pathParameters"] or {}
    assert set(params) == set(names)
    assert event["path"] == re.sub(r"\{(\w+)\+?\}", lambda m: params[m.group(1)], resource)

    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    if event["body"] is not None and not event["isBase64Encoded"]:
        assert event["headers"].get("Content-Type") == "application/json"
        json.loads(event["body"])
    if function == ADMIN:  # what API Gateway's AWS_IAM authorizer hands the admin app
        assert context["identity"].get("userArn"), "an IAM-authorised event carries the caller's userArn"


# ------------------------------------------------------------------ generated images (S3)


def test_images_bucket_is_private_encrypted_and_expires_in_a_day(template):
    bucket = template["Resources"]["ImagesBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    props = bucket["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], "no ACLs"
    rules = [r for r in props["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    assert any(r.get("ExpirationInDays") == 1 and "Prefix" not in r and "Filter" not in r for r in rules), (
        "every generated image expires after one day"
    )
    policy = template["Resources"]["ImagesBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ImagesBucket"}
    deny = policy["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_gateway_may_only_put_and_get_generated_images(template):
    props = template["Resources"][GATEWAY]["Properties"]
    assert props["Environment"]["Variables"]["PISCES_IMAGES_BUCKET"] == {"Ref": "ImagesBucket"}
    s3 = [st for policy in props["Policies"] if "Statement" in policy for st in policy["Statement"]
          if any(str(a).startswith("s3:") for a in st["Action"])]  # fmt: skip
    assert len(s3) == 1, "one S3 statement"
    assert s3[0]["Effect"] == "Allow" and sorted(s3[0]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert s3[0]["Resource"] == {"Fn::Sub": "${ImagesBucket.Arn}/images/*"}, "objects under images/ only"
    for name in ("AdminFunction", "ReconcilerFunction"):
        assert "ImagesBucket" not in json.dumps(template["Resources"][name]["Properties"].get("Policies", []))


def test_multipart_bodies_reach_the_gateway(template):
    binary = template["Resources"]["PiscesApi"]["Properties"]["BinaryMediaTypes"]
    assert "multipart~1form-data" in binary, "image edits arrive base64-encoded and intact"
    assert {("POST", "/v1/images/generations"), ("POST", "/v1/images/edits")} <= _routes(template, GATEWAY)
