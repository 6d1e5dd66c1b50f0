"""Real local servers that tests talk to over HTTP on loopback."""
