"""Training objectives of SG-DETR (architecture.md §4, §6)."""
