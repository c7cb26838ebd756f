"""The ledger's schema: one list of SQL statements per version, applied in order on open.

==============  ================================================================================
table           one row per
==============  ================================================================================
runs            training process: recipe name, resolved recipe TOML, overrides (the recipe keys
                that differ from the named recipe), cache fingerprint / path / render settings,
                representation, dataset, split name and key, seed, sconet git commit (or version),
                host, pid, start / end time, status (:data:`STATUSES`), iterations done, error;
                since version 2: ``group_name`` (runs of one ``--seeds`` call), ``init_sha256`` (the
                warm-start file), ``stop_evidence`` (JSON of the stop rule that ended it),
                ``launcher`` (how a detached run was started)
run_evals       in-run evaluation (iteration, metrics JSON: ``test_f1``, ``val_f1`` ...; since
                version 2 ``predictions``: the test set's per-sequence ids, labels, probabilities)
checkpoints     checkpoint file written by a run (absolute path, sha256, size, iteration, role
                ``last|best``, kept metric, the in-run metrics stored with it and the iteration
                those metrics were measured at)
evaluations     standalone evaluation (``sconet eval``, ``promote``, ``compare``, ``experiment``):
                checkpoint sha256 and path, split, subset, max frames, metrics JSON, time; since
                version 2 ``dataset``, ``split_key``, ``intervals`` (bootstrap intervals JSON) and
                ``predictions`` (per-sequence ids, labels, probabilities: pairwise comparisons);
                since version 3 ``render``: the render settings of the checkpoint's maps and their
                source (``checkpoint`` or the user's statement)
promotions      ``sconet promote`` decision (accepted or refused) with its rule evidence; since
                version 2 ``comparison``: the paired comparison with the promoted checkpoint
experiments     (version 2) ``sconet experiment run``: plan, output folder, winner, report, result
==============  ================================================================================
"""

from __future__ import annotations

SCHEMA_VERSION = 3
STATUSES = ("running", "finished", "failed", "interrupted", "stopped")
"""Run statuses the ledger records (``sconet runs`` adds ``lost``: running, but no longer alive)."""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            out TEXT, recipe TEXT, recipe_toml TEXT, overrides TEXT, representation TEXT, arch TEXT,
            cache_fingerprint TEXT, cache_path TEXT, dataset TEXT, render TEXT, renderer_version TEXT,
            split TEXT, split_key TEXT, n_train INTEGER, n_val INTEGER, n_test INTEGER, seed INTEGER,
            iters INTEGER, start_iteration INTEGER, iteration INTEGER, resumed_from INTEGER,
            git_commit TEXT, sconet_version TEXT, host TEXT, pid INTEGER, device TEXT, world_size INTEGER,
            started_at TEXT, ended_at TEXT, status TEXT NOT NULL, error TEXT)""",
        """CREATE TABLE run_evals (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id),
            iteration INTEGER NOT NULL, metrics TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id),
            path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER, iteration INTEGER NOT NULL,
            role TEXT NOT NULL, metric TEXT, metrics TEXT, metrics_iteration INTEGER,
            saved_at TEXT NOT NULL)""",
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT, path TEXT, kind TEXT, iteration INTEGER,
            split TEXT, subset TEXT, max_frames INTEGER, cache_path TEXT, device TEXT, purpose TEXT,
            metrics TEXT NOT NULL, seconds REAL, git_commit TEXT, at TEXT NOT NULL)""",
        """CREATE TABLE promotions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, split_key TEXT NOT NULL, sha256 TEXT NOT NULL,
            source_path TEXT, artifact_path TEXT, run_id INTEGER, accepted INTEGER NOT NULL,
            metrics TEXT, evidence TEXT, at TEXT NOT NULL)""",
        "CREATE INDEX run_evals_run ON run_evals(run_id)",
        "CREATE INDEX checkpoints_run ON checkpoints(run_id)",
        "CREATE INDEX checkpoints_sha ON checkpoints(sha256)",
        "CREATE INDEX checkpoints_path ON checkpoints(path)",
        "CREATE INDEX evaluations_sha ON evaluations(sha256)",
        "CREATE INDEX promotions_split ON promotions(split_key)",
    ),
    2: (
        "ALTER TABLE runs ADD COLUMN group_name TEXT",
        "ALTER TABLE runs ADD COLUMN init_sha256 TEXT",
        "ALTER TABLE runs ADD COLUMN stop_evidence TEXT",
        "ALTER TABLE runs ADD COLUMN launcher TEXT",
        "ALTER TABLE run_evals ADD COLUMN predictions TEXT",
        "ALTER TABLE evaluations ADD COLUMN dataset TEXT",
        "ALTER TABLE evaluations ADD COLUMN split_key TEXT",
        "ALTER TABLE evaluations ADD COLUMN intervals TEXT",
        "ALTER TABLE evaluations ADD COLUMN predictions TEXT",
        "ALTER TABLE promotions ADD COLUMN comparison TEXT",
        """CREATE TABLE experiments (
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, plan_path TEXT, out TEXT, winner TEXT,
            report TEXT, result TEXT, at TEXT NOT NULL)""",
        "CREATE INDEX runs_group ON runs(group_name)",
    ),
    # the render settings an evaluated checkpoint's maps have and where they came from
    # (recorded by sconet, or stated by the user for an OpenGait checkpoint)
    3: ("ALTER TABLE evaluations ADD COLUMN render TEXT",),
}
