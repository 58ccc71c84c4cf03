"""The lecture's worked examples, built from manual_bp layers (README: "From the lecture to the code")."""
