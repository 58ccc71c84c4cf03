"""Runnable examples of using manual_bp: `python -m examples.<name>` from the project root."""
