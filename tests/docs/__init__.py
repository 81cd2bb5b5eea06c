"""The documentation, run as a newcomer would run it."""
