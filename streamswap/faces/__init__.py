"""Face analysis on batches: detection, landmarks, identity, alignment.

Frames come in as one batch tensor (N, 3, H, W) uint8 RGB on the pipeline device (one size per
batch); faces go out as a `records.FaceBatch` of tensors on the same device (K rows with
`frame_index`), with `FaceBatch.faces()` as a per-face host view.

- detect.py      SCRFD (scrfd_10g_bnkps / det_10g ONNX), letterbox + decode + NMS in torch
- landmarks.py   2d106 dense landmarks (2d106det ONNX)
- identity.py    ArcFace embeddings (torch module on GHOST's crop, or insightface's ONNX
                 recognisers on the ArcFace crop) and reference matching
- align.py       5-point similarity transforms (GHOST 224 pose templates, ArcFace 112), crops, inverses
- lite.py        the dlib backend (HOG, 68 landmarks, 128-d descriptor) with the same interfaces
- onnx_runtime.py the ONNX models behind one interface: onnx2torch-converted torch module, or onnxruntime
- nms.py, records.py, image.py  greedy NMS in torch; the records; reading a still image
"""
