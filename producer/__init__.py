"""Producer: puts tasks on god in batches: the tutorial's random rounds, or JSON lines."""
