"""Where the configuration comes from: a file (``PISCES_CONFIG``, pisces.yaml), or, in AWS, an SSM
Parameter Store parameter (``PISCES_CONFIG_PARAMETER``, the template's ConfigParameterName) holding
the same YAML, read through Powertools Parameters and cached for ``PISCES_CONFIG_CACHE_SECONDS``.

With a parameter, an operator changes channels, models and prices with ``aws ssm put-parameter``
and no new build: a warm gateway looks again once its cache has expired (:meth:`ConfigSource.fresh`,
called before each request, costs nothing while the cache is fresh) and swaps in the new
configuration between requests. A parameter that cannot be read or parsed keeps the configuration
the gateway has (and is logged); at a cold start it is an error, as a broken pisces.yaml is.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pisces.config import Config, ConfigError, load_config, parse_text

PARAMETER_ENV = "PISCES_CONFIG_PARAMETER"
CACHE_ENV = "PISCES_CONFIG_CACHE_SECONDS"
DEFAULT_CACHE_SECONDS = 60.0

_provider: Any = None  # one Powertools SSMProvider per process (its cache is per provider)


def provider() -> Any:
    global _provider
    if _provider is None:
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        _provider = SSMProvider()
    return _provider


def read_parameter(name: str, max_age: float) -> str:
    """The parameter's text (a SecureString decrypted), from Powertools' cache while it is younger than max_age."""
    value = provider().get(name, max_age=int(max_age), decrypt=True)
    return value if isinstance(value, str) else value.decode()


class ConfigSource:
    """The configuration and where it came from; ``fresh`` says whether it changed since."""

    def __init__(self, parameter: str | None = None, cache_seconds: float | None = None) -> None:
        self.parameter = parameter if parameter is not None else (os.environ.get(PARAMETER_ENV) or None)
        env_age = os.environ.get(CACHE_ENV)
        self.cache_seconds = cache_seconds if cache_seconds is not None else (
            float(env_age) if env_age else DEFAULT_CACHE_SECONDS)  # fmt: skip
        self.text: str | None = None
        self.checked = float("-inf")  # monotonic time of the last look

    def load(self) -> Config:
        """The configuration now: the parameter's when one is named, else the file's (``load_config``)."""
        if not self.parameter:
            return load_config()
        try:
            text = read_parameter(self.parameter, self.cache_seconds)
        except Exception as e:
            raise ConfigError(f"cannot read the configuration parameter {self.parameter}: {type(e).__name__}") from e
        config = parse_text(text, source=f"ssm:{self.parameter}")
        self.text, self.checked = text, time.monotonic()
        return config

    async def fresh(self) -> Config | None:
        """A new configuration when the parameter's text changed since the last look, else None (also
        while the cache is fresh, and when there is no parameter)."""
        if not self.parameter or time.monotonic() - self.checked < self.cache_seconds:
            return None
        self.checked = time.monotonic()
        try:
            text = await asyncio.to_thread(read_parameter, self.parameter, self.cache_seconds)
            if text == self.text:
                return None
            config = parse_text(text, source=f"ssm:{self.parameter}")
        except Exception as e:  # the configuration the gateway has stays
            from pisces.pipeline.logs import logger

            logger.warning("configuration parameter not applied", extra={"parameter": self.parameter,
                                                                         "error": str(e)[:500]})  # fmt: skip
            return None
        self.text = text
        return config
