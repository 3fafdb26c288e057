"""Benchmarks: whole jobs (`jobs`), each stage alone (`stages`), throughput and memory against
input length (`length`), the seed implementation's way of running the same models (`jobs`'
baseline), and their plots (`plot`) -- the `streamswap bench` commands. Every report records the
device, versions and settings (`report.environment`).

The measurements behind the scripts in benchmarks/ (each a thin command line over a `main(argv)`
here): face detection (`detect`), the generator alone (`generator`), keypoint jitter of tracks
(`jitter`), the lite engine end to end (`lite_swap`), a training step (`train_step`), transcode
overhead (`transcode`), a live job's memory (`live_rss`) and the GPU device suite
(`gpu_suite`). Their inputs (`media`) and timing loops (`timing`) are shared."""
