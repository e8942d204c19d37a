"""One module per port type; ``common`` holds what they share."""
