"""The NVIDIA DALI pipelines, all of them: today one, the training pairs (`dali_pairs.py`, used
by `train --loader dali`). Video decoding does not go through DALI: NVDEC is read with
PyNvVideoCodec (`streamswap.video.nv`)."""
