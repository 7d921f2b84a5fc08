"""Test harnesses: real servers spawned on loopback, netem-style links, network namespaces."""
