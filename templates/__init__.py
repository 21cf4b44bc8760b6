"""Text HiveMind renders (service units, user data, proxy config, reports), read with
importlib.resources. Imports nothing."""
