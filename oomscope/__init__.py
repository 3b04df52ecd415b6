"""oomscope: OOM-kill forensics for Linux hosts and containers."""

__version__ = "0.1.0"
