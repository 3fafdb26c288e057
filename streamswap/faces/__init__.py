"""Face analysis on batches: detection, landmarks, identity, alignment."""
