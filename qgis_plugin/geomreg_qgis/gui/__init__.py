"""Widgets of the plugin."""
