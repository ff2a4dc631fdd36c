"""The NautilusTrader producer service: actor, node wiring, Redis publisher, HTTP."""
