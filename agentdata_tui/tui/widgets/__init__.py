"""Reusable widgets: the conversation view, a line-API table, Rich renderers."""
