"""From walking videos to pose sequences: ``sconet pose`` and ``sconet predict video.mp4``.

- :mod:`~sconet.video.backends`: the pose-backend interface and registry
  (:func:`create_backend`); backends ``blazepose`` (:mod:`~sconet.video.blazepose`, the
  default) and ``onnx`` (:mod:`~sconet.video.onnx_backend`);
- :mod:`~sconet.video.reader`: decoding (:class:`VideoError` names the file);
- :mod:`~sconet.video.extract`: one video -> ``[T, 17, 3]`` + sidecar (:func:`extract_poses`,
  :func:`save_poses`);
- :mod:`~sconet.video.manifest`: many videos or a manifest CSV -> pose files or a dataset in
  the Scoliosis1K layout, resumable and parallel (:func:`run_jobs`);
- :mod:`~sconet.video.screen`: a video screened with a checkpoint, and its report.

The backends' packages (mediapipe, onnxruntime, OpenCV) are optional: ``pip install
'sconet[video]'``. Nothing is downloaded at run time.
"""

from sconet.video.backends import BackendError, PoseBackend, backend_names, create_backend, register_backend
from sconet.video.extract import (
    ExtractConfig,
    PoseExtraction,
    extract_poses,
    parse_roi,
    read_sidecar,
    save_poses,
)
from sconet.video.manifest import (
    ManifestError,
    PoseJob,
    PoseRun,
    jobs_from_manifest,
    jobs_from_videos,
    run_jobs,
)
from sconet.video.reader import VIDEO_SUFFIXES, VideoError, VideoInfo, is_video, probe_video

__all__ = [
    "BackendError",
    "ExtractConfig",
    "ManifestError",
    "PoseBackend",
    "PoseExtraction",
    "PoseJob",
    "PoseRun",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoInfo",
    "backend_names",
    "create_backend",
    "extract_poses",
    "is_video",
    "jobs_from_manifest",
    "jobs_from_videos",
    "parse_roi",
    "probe_video",
    "read_sidecar",
    "register_backend",
    "run_jobs",
    "save_poses",
]
