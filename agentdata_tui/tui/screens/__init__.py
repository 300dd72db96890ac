"""Screens of the TUI: launch, dashboard, browser, statistics, export and small dialogs."""
