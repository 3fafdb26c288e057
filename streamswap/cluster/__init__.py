"""Scale-out on Ray: one long video split into chunks, or many videos, over a cluster's workers.

- chunks.py: keyframe index of a video (demuxed packets, nothing decoded) and the chunk plan;
- workdir.py: a job's work directory: the plan, finished chunks (what a re-run keeps);
- worker.py: the Ray actor that keeps the models loaded and runs chunks;
- schedule.py: which chunk runs on which worker, retries, lost workers (no Ray: run.py drives it);
- stitch.py: the final file by packet copy of the chunks, audio copied once from the input;
- outputs.py: the lock on an output's work and the record that says an output is complete;
- trust.py: what a worker must share with the driver (StreamSwap version, model files);
- run.py: the driver: local or joined cluster, scheduling, retries, progress, summary.

Only run.py and worker.py's callers import Ray, and only when a cluster job starts: a plain
swap never imports it.
"""
