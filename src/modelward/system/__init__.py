"""system layer of modelward (see DESIGN.md)."""
