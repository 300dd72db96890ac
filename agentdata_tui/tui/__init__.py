"""The Textual TUI: launch screen, live dashboard, trajectory browser.

A thin shell over the core: the domain logic it needs without Textual lives in
``index`` (the browser's index), ``state`` (the dashboard's fold of events),
``launch_settings`` and ``checks``; ``app.make_app`` builds the application.
"""
