"""One store per (dataset, render settings), by default
``<cache_root>/stores/<dataset>-<representation>-<RenderConfig.key()>.zarr``:

=========  ===================================  ==========================================
node       dtype, shape                         chunks / codec
=========  ===================================  ==========================================
frames     uint8 ``[total_frames, 2, 64, 64]``  ``(300, 2, 64, 64)``, zstd (see below)
offsets    int64 ``[N + 1]``                    one chunk; sequence ``i`` is
                                                ``frames[offsets[i]:offsets[i + 1]]``
labels     int8 ``[N]``                         one chunk; index into :data:`CLASSES`
pav        float32 ``[N, 8, 3]``                one chunk; raw postural asymmetry vectors
=========  ===================================  ==========================================

Root attributes: ``format_version``, ``ids``, ``views`` (sorted by id, view), ``index_digest``
(sha256 over ids, views, offsets, labels and pav; :func:`open_cache` recomputes it), ``classes``,
``render``
(:meth:`RenderConfig.to_dict`), ``renderer_version``, ``sconet_version``, ``dataset``
(``{"name", "source"}``), ``split`` and ``split_problems`` (the split given when the store was
built, informational only: the store holds every sequence and is reused whatever split is given
later), ``input_fingerprint``, ``counts`` (``{"sequences", "frames", "per_class"}``), ``codec``,
``chunk_frames``, ``created``, ``skipped`` (files left out by ``skip_bad``) and, written last,
``fingerprint`` and ``complete = true``. Chunk keys use the ``"."`` separator
(``frames/c.12.0.0.0``: one flat folder of chunk files, no sharding) and every chunk file is
written, even an all-zero one, so that a missing chunk file always means damage.

Fingerprints
------------
* input fingerprint: sha256 over the sorted ``(id, label, view, shape, float32 pose bytes)`` of
  every sequence that goes into the store (content, not file names or dates: re-pickling the same
  arrays keeps it, changing one keypoint changes it);
* listing fingerprint (:mod:`sconet.cache.inputs`): sha256 over every scanned pose file's path,
  label folder, size and dates, found without opening a file;
* store fingerprint: sha256 over the input fingerprint, the render settings, the renderer version,
  the store format version and the codec.

Reuse and integrity
-------------------
Every pose file is read and checked before anything is written: a pose that cannot be rendered
or measured (:mod:`sconet.render.checks`) is a bad file like an unreadable one (named; skipped
under ``skip_bad``). At completion the build writes ``integrity.json`` (:mod:`sconet.cache.integrity`):
size, dates and sha256 of every file of the store, the digest of the root attributes, and the
listing of the inputs. A complete store is reused only when its settings match, its structure
opens, its inputs are current (same listing; else same content) and its files are as built
(one ``stat`` per file, a read only where a stat changed; :mod:`sconet.cache.reuse`), so
reusing the full synthetic store reads no pose file and no chunk. Otherwise it is rebuilt and
replaced, and :class:`CacheResult` says why (``replaced``), e.g. a damaged chunk file named.
``CacheConfig.rebuild`` (``sconet cache --rebuild``) always builds afresh. :func:`stale_inputs`
applies the same inputs check for ``sconet train --poses``.

Crash safety and resuming
-------------------------
A store is built in ``<path>.partial/`` (a zarr v3 ``LocalStore``). Arrays and attributes
(``complete = false``) come first, then the frames, rendered in batches of whole sequences
(``batch_frames``, into two reused buffers) and written in whole chunks only (the tail of a
batch that does not fill a chunk is carried into the next batch's buffer; only the very last
chunk of the array may be short), so every chunk file is
written exactly once. Each chunk file, like every file zarr's ``LocalStore`` writes, goes
through a temporary file and a rename. After each flushed chunk range ``progress.json`` (frames
committed, fingerprint) is replaced atomically (tmp + ``os.replace``). At the end the completion
marker (attributes ``fingerprint`` and ``complete = true``, one atomic ``zarr.json``
replacement) is written LAST, then the folder is renamed into place (an older store at the path
is swapped out and deleted only after that). So a ``kill -9`` at any moment leaves at worst a
``.partial`` folder that does not claim to be complete. The next build with the same fingerprint
resumes it from its first uncommitted frame (re-rendering from the sequence that holds it); a
partial with another fingerprint is discarded. Builds of one path are serialised with an
``flock`` on a hidden lock file beside the store. Files are not fsynced: the guarantee covers a
killed or crashed process, not power loss (``verify_cache`` finds what that damaged).

Writing and reading chunks
--------------------------
Rendering of batch ``k + 1`` (Rust, GIL released) runs in a worker thread while batch ``k`` is
compressed and written by a small pool of encoder threads (numcodecs zstd releases the GIL).
The chunk files are encoded here with numcodecs' ``Zstd`` (exactly what zarr writes for this
array's ``[bytes, zstd]`` codecs; the tests read them back through zarr) rather than through
``zarr.Array.__setitem__``, which costs about 25 us of extra CPU per frame. Reads
(:meth:`CacheStore.load_frames`, :func:`verify_cache`) likewise decode the chunk files
directly, in a few threads: faster than zarr, and a missing chunk file is an error instead of
silently reading as zeros (zarr's fill value).

Imported stores
---------------
``sconet cache import`` copies an OpenGait heatmap tree into a store of this format byte for
byte; its attributes then also hold ``provenance`` (where the maps came from and how the user
said they were made) and ``pav_available``, ``render`` is the stated settings (``None`` when
unknown) and ``renderer_version`` is ``"imported"``. ``sconet cache export`` writes any store back
as such a tree. See :mod:`sconet.cache.opengait`.

Modules: ``format`` (constants, configuration, names, fingerprints), ``inputs`` (scanning,
loading and checking the pose files), ``integrity`` (the manifest), ``reuse`` (may a store be
reused), ``build``, ``store`` (open, read), ``verify``, ``find``, ``opengait`` (import /
export). Codec and integrity measurements: ``docs/performance.md``.
"""

from sconet._paths import cache_root
from sconet.cache.build import build_cache
from sconet.cache.find import find_cache, find_caches
from sconet.cache.format import (
    CHUNK_FRAMES,
    FORMAT_VERSION,
    SYNTHETIC_DATASET,
    CacheConfig,
    CacheError,
    CacheResult,
    VerifyReport,
    dataset_name,
    default_store_path,
    input_fingerprint,
    store_fingerprint,
)
from sconet.cache.inputs import stale_inputs
from sconet.cache.integrity import check_store_files
from sconet.cache.opengait import (
    ExportResult,
    ImportConfig,
    default_import_path,
    export_heatmaps,
    import_heatmaps,
)
from sconet.cache.store import CacheStore, open_cache
from sconet.cache.verify import verify_cache
from sconet.classes import CLASSES

__all__ = [
    "cache_root",
    "build_cache",
    "find_cache",
    "find_caches",
    "stale_inputs",
    "check_store_files",
    "CHUNK_FRAMES",
    "FORMAT_VERSION",
    "SYNTHETIC_DATASET",
    "CacheConfig",
    "CacheError",
    "CacheResult",
    "VerifyReport",
    "dataset_name",
    "default_store_path",
    "input_fingerprint",
    "store_fingerprint",
    "CacheStore",
    "open_cache",
    "ExportResult",
    "ImportConfig",
    "default_import_path",
    "export_heatmaps",
    "import_heatmaps",
    "verify_cache",
    "CLASSES",
]
