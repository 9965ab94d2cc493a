"""Condition encoders: each maps a condition (a class label, a text, a sound) to an
embedding that conditional generators and discriminators consume."""
