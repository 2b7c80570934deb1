"""Core: errors (what, where, fix), specs, markers, settings, JSON conversion.

Every other layer may import this one; it imports nothing of nb2prod above it.
"""
