"""`streamswap eval`: how good a swap is, measured against the video it was made from.

frames.py reads the original and the outputs in lockstep (aligned by timestamp); faces.py finds
the face on the original (dlib) and fits the same face box on each output; metrics.py holds the
per-frame measures (identity, pose, expression, eyes, flicker, jitter, background); run.py puts
them together into the records of report.py, which also writes JSON, CSV and the plot.
"""
