"""Built-in synthetic Scoliosis1K: deterministic, Scoliosis1K-like 2D pose sequences.

The generative model is described for users in ``docs/synthetic.md``. In short: every sequence
is one synthetic adolescent walking back and forth in front of a fixed camera (towards it,
turning, away from it), simulated as a small 3D stick figure with per-subject body proportions
and gait, projected with a pinhole camera into a 1080 x 1920 (portrait) image, then corrupted
like a 2D pose estimator's output (jitter, per-subject keypoint bias, confidences, missing
joints, low-quality frames). Labels change a latent scoliosis *severity* that drives static
asymmetries: shoulder height difference, pelvic tilt, lateral trunk shift, head tilt and
arm-swing asymmetry. Severities overlap between classes on purpose.

Layout and ids are those of the release: ids ``00000``.. (1,493 by default), one view per id
(``000_180``-like names), ``<out>/<id>/<Label>/<view>/<view>.pkl`` holding a float32
``[T, 17, 3]`` array (pickle protocol 4), plus OpenGait split files ``Scoliosis1K_<ratio>.json``
and a ``synthetic.json`` manifest.

Determinism: the label assignment depends only on ``(seed, n_sequences, class_totals)``;
sequence ``i`` depends only on ``(seed, i, label, frames, asymmetry_scale, missing_rate)``, so
any sequence can be generated alone (:func:`generate_sequence`), in any order, in any process.
"""

from sconet.data.synth.dataset import (
    default_split_file,
    default_synthetic_root,
    ensure_synthetic,
    make_split,
    manifest_matches,
    parse_ratio,
    read_manifest,
    split_name,
    write_synthetic,
)
from sconet.data.synth.generator import (
    DEFAULT_SPLIT_RATIO,
    FPS,
    GENERATOR_VERSION,
    IMAGE_SIZE,
    MANIFEST_NAME,
    OFFICIAL_N_TRAIN,
    OFFICIAL_RATIOS,
    SynthConfig,
    SynthError,
    SynthExistsError,
    generate_sequence,
    iter_sequences,
    synthetic_ids,
    synthetic_labels,
    synthetic_view,
)

__all__ = [
    "default_split_file",
    "default_synthetic_root",
    "ensure_synthetic",
    "make_split",
    "manifest_matches",
    "parse_ratio",
    "read_manifest",
    "split_name",
    "write_synthetic",
    "DEFAULT_SPLIT_RATIO",
    "FPS",
    "GENERATOR_VERSION",
    "IMAGE_SIZE",
    "MANIFEST_NAME",
    "OFFICIAL_N_TRAIN",
    "OFFICIAL_RATIOS",
    "SynthConfig",
    "SynthError",
    "SynthExistsError",
    "generate_sequence",
    "iter_sequences",
    "synthetic_ids",
    "synthetic_labels",
    "synthetic_view",
]
