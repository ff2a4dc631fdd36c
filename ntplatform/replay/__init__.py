"""The replay exchange: Binance-compatible REST + WebSocket server replaying recordings.

``ntplatform replay-exchange`` runs it (see :mod:`ntplatform.replay.server`). Modules:
``recording`` loads and checks recordings, ``market`` holds the pure per-symbol replay
state, ``exchange_info``/``rest``/``streams`` answer the Binance protocols and
``server`` ties them together.
"""
