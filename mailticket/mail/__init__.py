"""Mail parsing, loop detection and composition."""
