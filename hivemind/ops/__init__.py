"""Ops: what a running deployment is doing — its logs, metrics, costs and traces."""
