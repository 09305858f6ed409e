"""The scripts each system runs in its own interpreter (``graphc bench --peer NAME=PYTHON``).

Each imports only NumPy, ``peer_protocol`` beside it and its own framework, never graphc:
a peer's environment need not have graphc installed.
"""
