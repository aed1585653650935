"""supplychain layer of modelward (see DESIGN.md)."""
