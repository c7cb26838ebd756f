"""Whether :func:`sconet.cache.build_cache` may reuse the store at a path, and why not.

A complete store of this format is reused when all of these hold, cheapest first:

1. its fingerprint is the one of its recorded input fingerprint under the requested render
   settings (same settings, renderer version, format and codec);
2. its structure opens (:func:`sconet.cache.open_cache`);
3. its inputs are current (:func:`sconet.cache.inputs.inputs_current`: the dataset's listing,
   else its content);
4. its files are as built (:func:`sconet.cache.integrity.check_store_files`: a stat per file,
   a read only where a stat changed). A store without a manifest (built by an older sconet)
   is verified in full once (:func:`sconet.cache.verify_cache`) and then given one.

Otherwise it is rebuilt and the reason is reported (``CacheResult.replaced``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sconet import render as _render
from sconet.cache.format import FORMAT_VERSION, CacheConfig, CacheError, _read_root_attrs, store_fingerprint
from sconet.cache.inputs import Inputs, Scan, inputs_current, remember_listing
from sconet.cache.integrity import check_store_files
from sconet.cache.store import CacheStore, open_cache
from sconet.cache.verify import verify_cache
from sconet.data import PoseError


@dataclass
class ReuseDecision:
    """``store``: the store to reuse (``None``: build); ``reason``: why an existing store is
    rebuilt (``None`` when there was none); ``inputs``: the loaded inputs if the check loaded them."""

    store: CacheStore | None = None
    reason: str | None = None
    inputs: Inputs | None = None


def _state(path: Path) -> tuple[str, str | None]:
    """('missing' | 'other' | 'candidate', reason) for what sits at ``path``."""
    if not path.exists() and not path.is_symlink():
        return "missing", None
    attrs = _read_root_attrs(path)
    if attrs is None or "format_version" not in attrs:
        if path.is_dir() and not any(path.iterdir()):
            return "other", "an empty folder"
        raise CacheError(
            f"{path}: exists and is not a sconet cache store; refusing to replace it "
            "(choose another --out or remove it)"
        )
    if attrs.get("complete") is not True:
        return "other", "the existing store is incomplete"
    if attrs.get("format_version") != FORMAT_VERSION:
        return "other", f"the existing store has format version {attrs.get('format_version')}"
    return "candidate", None


def _damaged(problems: list[str]) -> str:
    more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"the existing store is damaged ({problems[0]}{more})"


def decide_reuse(path: Path, scan: Scan, config: CacheConfig) -> ReuseDecision:
    """Check the store at ``path`` against the scanned inputs and ``config`` (see the module docstring)."""
    state, reason = _state(path)
    if state == "missing":
        return ReuseDecision()
    if config.rebuild:
        return ReuseDecision(reason="--rebuild was given")
    if state != "candidate":
        return ReuseDecision(reason=reason)
    attrs = _read_root_attrs(path) or {}
    if store_fingerprint(str(attrs.get("input_fingerprint")), config.render) != attrs.get("fingerprint"):
        if attrs.get("renderer_version") != str(_render.RENDERER_VERSION):
            return ReuseDecision(reason="the renderer version changed since the existing store was built")
        return ReuseDecision(reason="the existing store has another fingerprint (settings or format changed)")
    try:
        store = open_cache(path)
    except CacheError as exc:
        return ReuseDecision(reason=_damaged([str(exc)]))
    changed, inputs = inputs_current(scan, store, config.render, config.threads)
    if changed is not None:
        return ReuseDecision(reason=changed, inputs=inputs)
    files = check_store_files(path, attrs)
    if not files.manifest:  # built by an older sconet: verify every chunk once, then record them
        report = verify_cache(path)
        if not report.ok:
            return ReuseDecision(reason=_damaged(report.problems), inputs=inputs)
        remember_listing(store, scan)
    elif files.problems:
        return ReuseDecision(reason=_damaged(files.problems), inputs=inputs)
    elif inputs is not None:  # same content under a new listing (copied, touched): remember it
        remember_listing(store, scan)
    skipped = store.attrs.get("skipped") or []
    if skipped and not config.skip_bad:  # as a fresh build would: the first bad file stops it
        first = skipped[0]
        raise PoseError(
            first.get("path", path), f"{first.get('reason', 'bad file')} (use --skip-bad to leave it out)"
        )
    return ReuseDecision(store=store)
