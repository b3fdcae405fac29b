"""The gateway function: the data plane (protocol doors, spec, docs page)."""
