"""Draft heads on the target's hidden states: Medusa heads and an EAGLE draft layer."""
