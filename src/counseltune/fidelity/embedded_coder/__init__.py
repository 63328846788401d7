"""The embedded MITI coder: features, training, validation against human codes, and its stage."""
