"""Pisces: the protocol translation core shared by the gateway and admin functions (the Lambda layer)."""

__version__ = "0.1.0"
GATEWAY_NAME = "Pisces"
