"""The lecture's worked examples, built from manual_bp layers (docs/lecture.md)."""
