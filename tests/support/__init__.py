"""Test support: servers on loopback and fake upstreams."""
