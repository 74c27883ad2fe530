"""Helpers the test modules share: ports, waiting, subprocesses and their logs, the test
broker's topics, the in-process gateway and its clients, test data builders.

No test module imports another; what two of them need lives here (functions and classes)
or in ``tests/conftest.py`` (fixtures).
"""
