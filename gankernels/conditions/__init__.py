"""Conditions of conditional GANs: encoders that map a condition to an embedding."""
