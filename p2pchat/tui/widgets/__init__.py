"""Small widgets of the chat TUI."""
