"""HiveMind: reads an application's repository and runs it on AWS."""

__version__ = "0.1.0"
