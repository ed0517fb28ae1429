"""yieldmeter: AI value management."""

__version__ = "0.1.0"
