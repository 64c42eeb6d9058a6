"""One Screen class per screen of the chat TUI."""
