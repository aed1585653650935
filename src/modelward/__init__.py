"""modelward: secure machine-learning systems end to end, from threat model to evidence."""

__version__ = "0.1.0"
