"""Every code example on the docs page, extracted from the page the running gateway serves and run
against that gateway as shown: Python with the installed openai / anthropic / google-genai SDKs,
Node with tests/node's openai package, Go with the system's ``go`` (checked for its URL and headers
only where ``go`` is absent), curl with the system's curl. Each must print what the page says it does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.node import NODE_MODULES, clean_env, run_node

pytestmark = pytest.mark.browser

CHAT_OPS = ["chat", "streaming", "tools"]
PROTOCOL_OPS = {
    "openai": [*CHAT_OPS, "responses", "images", "embeddings"],
    "anthropic": CHAT_OPS,
    "gemini": [*CHAT_OPS, "embeddings"],
    "conventions": ["conventions"],
}
LANGS = ["python", "node", "go", "curl"]
CASES = [(p, op, lang) for p, ops in PROTOCOL_OPS.items() for op in ops for lang in LANGS]
AUTH = {"openai": "Authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key", "conventions": "Authorization"}
GO = shutil.which("go")


@pytest.fixture(scope="module")
def page_examples(gateway: Any, load_docs: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    ctx, page = load_docs(f"{gateway.url}/")
    found = page.eval_on_selector_all(
        "pre.example",
        "els => els.map(e => ({...e.dataset, code: e.textContent}))",
    )
    ctx.close()
    out = {}
    for ex in found:
        k = (ex["protocol"], ex["op"], ex["lang"])
        assert k not in out, f"two examples for {k}"
        out[k] = {**ex, "expect": json.loads(ex["expect"])}
    return out


@pytest.fixture(scope="module")
def run_env(gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = clean_env(home, PISCES_API_KEY=gateway.new_key(name="docs-examples"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["GOCACHE"] = str(tmp_path_factory.mktemp("gocache"))
    env["GOPATH"] = str(tmp_path_factory.mktemp("gopath"))
    env["GOPROXY"], env["GOFLAGS"], env["GO111MODULE"] = "off", "-mod=mod", "auto"
    return env


def test_every_example_on_the_page_is_run_here(page_examples):
    """The page shows exactly the examples this module runs: none is left untested."""
    assert set(page_examples) == set(CASES)


def run(lang: str, code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if lang == "python":
        (cwd / "example.py").write_text(code)
        return subprocess.run([sys.executable, "example.py"], cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=120)  # fmt: skip
    if lang == "node":
        (cwd / "node_modules").symlink_to(NODE_MODULES)
        return run_node(code, env, cwd=cwd)
    if lang == "go":
        (cwd / "main.go").write_text(code)
        return subprocess.run([GO or "go", "run", "main.go"], cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=300)  # fmt: skip
    return subprocess.run(["bash", "-e", "-c", code], cwd=cwd, env=env, text=True, capture_output=True, timeout=120)


@pytest.mark.parametrize(("protocol", "op", "lang"), CASES, ids=["-".join(c) for c in CASES])
def test_example_runs_as_shown(protocol, op, lang, page_examples, run_env, gateway, tmp_path):
    ex = page_examples[(protocol, op, lang)]
    code: str = ex["code"]
    assert gateway.url in code, "the example is filled with this gateway's base URL"
    assert "PISCES_API_KEY" in code, "the key comes from the environment"
    if lang in ("go", "curl"):  # the raw-HTTP examples send the protocol's own auth header (or ?key=)
        assert AUTH[protocol] in code or "?key=$PISCES_API_KEY" in code
    if lang == "go" and GO is None:
        # No Go toolchain here: the program is checked, not run.
        assert re.search(r'http\.NewRequest\("POST", "' + re.escape(gateway.url) + "/v1", code)
        assert 'os.Getenv("PISCES_API_KEY")' in code and "package main" in code
        pytest.skip("go is not installed: the Go example was checked for its URL and headers, not run")
    r = run(lang, code, run_env, tmp_path)
    assert r.returncode == 0, f"{lang} example failed:\n{code}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr[-3000:]}"
    for line in ex["expect"]:
        assert line in r.stdout, f"expected {line!r} in the output:\n{r.stdout[:3000]}\n--- stderr\n{r.stderr[-2000:]}"
    if op == "images" and lang != "curl":
        png = (tmp_path / "lighthouse.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_go_examples_are_gofmt_clean(page_examples, tmp_path):
    """The Go programs are as gofmt writes them (what a Go user pastes is what `go fmt` keeps)."""
    gofmt = shutil.which("gofmt")
    if gofmt is None:
        pytest.skip("gofmt is not installed")
    diffs = []
    for (p, op, lang), ex in page_examples.items():
        if lang == "go":
            f = tmp_path / f"{p}_{op}.go"
            f.write_text(ex["code"])
            r = subprocess.run([gofmt, "-d", str(f)], capture_output=True, text=True, check=True)
            diffs += [r.stdout] if r.stdout.strip() else []
    assert not diffs, "\n".join(diffs)
