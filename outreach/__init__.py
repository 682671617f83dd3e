"""outreach: sales sequences as code, sent at most once."""

__version__ = "0.1.0"
