"""pisces.environ.env is os.environ.get, through every way a test or an operator changes the environment;
the metrics switch read through it is Powertools' own."""

from __future__ import annotations

import itertools
import os

import pytest
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from pisces.environ import env
from pisces.pipeline.logs import metrics_disabled

NAME = "PISCES_TEST_ENVIRON_READ"


def test_env_says_what_os_environ_says_as_it_changes(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    assert env(NAME) is None is os.environ.get(NAME)
    for value in ("plain", "", "caf\u00e9 \u65e5\u672c", " spaced ", "a=b;c"):
        monkeypatch.setenv(NAME, value)
        assert env(NAME) == os.environ.get(NAME) == value
    os.environ[NAME] = "written"  # an operator's os.environ write, not monkeypatch's
    assert env(NAME) == "written"
    os.environ.update({NAME: "updated"})
    assert env(NAME) == "updated"
    del os.environ[NAME]
    assert env(NAME) is None
    assert env("PATH") == os.environ["PATH"]
    assert env(NAME + "\u00e9") is None  # a name os.environ would encode


SAID = [None, "", "true", "false", "1", "0", "TRUE", "yes", "maybe"]


@pytest.mark.parametrize(("dev", "disabled"), list(itertools.product(SAID, repeat=2)))
def test_the_metrics_switch_is_powertools_own(monkeypatch, dev, disabled):
    for name, value in (("POWERTOOLS_DEV", dev), ("POWERTOOLS_METRICS_DISABLED", disabled)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    try:
        expected: bool | type[ValueError] = is_metrics_disabled()
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            metrics_disabled()
    else:
        assert metrics_disabled() is expected
