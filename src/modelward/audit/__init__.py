"""audit layer of modelward (see DESIGN.md)."""
