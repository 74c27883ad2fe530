"""callcost: real-time cost per call for contact centres."""

__version__ = "0.1.0.dev0"
