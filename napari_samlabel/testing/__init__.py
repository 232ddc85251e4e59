"""Test doubles and tiny models: fakes, tiny random-weight models, the ground-truth oracle."""
