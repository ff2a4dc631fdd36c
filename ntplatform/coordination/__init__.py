"""Coordination of several producer nodes: rendezvous ownership and fenced leases."""
