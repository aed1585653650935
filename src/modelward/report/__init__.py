"""report layer of modelward (see DESIGN.md)."""
