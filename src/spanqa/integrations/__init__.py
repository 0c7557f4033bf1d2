"""Adapters that put a spanqa `Reader` inside other frameworks (optional extras)."""
