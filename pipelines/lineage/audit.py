"""`python -m pipelines lineage MODEL_DIR`: audit what a trained model was made from.

Reads the lineage manifest (lineage.json) beside a merged model or an adapter and resolves the chain
merged model -> adapter -> training config -> augmented set (Delta version) -> normalized samples
(Delta version) -> raw table (Delta version) -> raw files (DVC md5, git commit).

The manifest records the augmented set's Delta version. Each upstream table version is the one that
stage's write recorded in its Delta commit (`pipelines.data.lake.INPUTS_COMMIT_KEY`, written by
`pipelines.data.stages`); a table written before stages recorded it falls back to the newest upstream
version committed before it (each stage reads the current upstream version right before writing).
Either way the upstream version must contain every row the downstream version refers to, or the audit fails.

`--records OUT.jsonl` writes the raw lines behind the training split, read through Delta time travel.
`--verify` recomputes every hash and exits 1 naming each artifact that changed since training.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipelines.data.lake import AUGMENTED_TABLE as AUGMENTED
from pipelines.data.lake import INPUTS_COMMIT_KEY
from pipelines.data.lake import NORMALIZED_TABLE as NORMALIZED
from pipelines.data.lake import RAW_TABLE as RAW
from pipelines.lineage.manifest import MANIFEST_NAME, LineageError, read_manifest


@dataclass(frozen=True)
class TableLink:
    table: str
    path: Path
    version: int
    how: str  # "manifest" | "recorded in commit" | "committed before <table> v<N>"


@dataclass
class Chain:
    model_dir: Path
    manifest: dict[str, Any]
    adapter_dir: Path | None
    base_model_dir: Path | None
    augmented: TableLink
    normalized: TableLink
    raw: TableLink
    raw_files_md5: dict[str, str]
    per_command: dict[str, dict[str, int]] = field(default_factory=dict)
    raw_files_in_table: dict[str, str] = field(default_factory=dict)


def _history(path: Path) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        raise LineageError(f"no Delta table at {path}")
    return sorted(DeltaTable(str(path)).history(), key=lambda entry: entry["version"])


def _commit(path: Path, version: int) -> dict[str, Any]:
    for entry in _history(path):
        if entry["version"] == version:
            return entry
    raise LineageError(f"{path}: version {version} is not in the table history (vacuumed or rewritten?)")


def resolve_upstream(downstream: TableLink, upstream_table: str, lake: Path) -> TableLink:
    """The upstream table version the downstream version was computed from."""
    upstream_path = lake / upstream_table
    commit = _commit(downstream.path, downstream.version)
    recorded = commit.get(INPUTS_COMMIT_KEY)
    if recorded:
        inputs = json.loads(recorded) if isinstance(recorded, str) else recorded
        if upstream_table in inputs:
            return TableLink(upstream_table, upstream_path, int(inputs[upstream_table]), "recorded in commit")
    committed_at = commit["timestamp"]
    candidates = [entry["version"] for entry in _history(upstream_path) if entry["timestamp"] <= committed_at]
    if not candidates:
        raise LineageError(f"{upstream_path} has no version committed before {downstream.table} v{downstream.version}")
    return TableLink(
        upstream_table, upstream_path, max(candidates), f"committed before {downstream.table} v{downstream.version}"
    )


def read_link(link: TableLink, columns: list[str] | None = None):
    """The rows of `link`'s table at its version (Delta time travel); LineageError when that version is gone."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(str(link.path), version=link.version)
    except Exception as error:  # deltalake raises several types for a version that cannot be loaded
        raise LineageError(f"cannot time-travel {link.table} to v{link.version} at {link.path}: {error}") from error
    return table.to_pyarrow_table(columns=columns).to_pandas()


def training_set_link(model_dir: Path, manifest: dict[str, Any], lake: Path) -> TableLink:
    """The augmented-set version a model was trained on, as its manifest records it."""
    data = manifest.get("data") or {}
    if data.get("delta_version") is None:
        raise LineageError(f"{Path(model_dir) / MANIFEST_NAME}: no data.delta_version recorded for the training set")
    table = data.get("table", AUGMENTED)
    return TableLink(table, Path(data.get("table_path") or Path(lake) / table), int(data["delta_version"]), "manifest")


def training_tables(model_dir: Path, lake: Path) -> tuple[TableLink, TableLink]:
    """(augmented set, normalized samples) at the versions the model in `model_dir` was trained from."""
    augmented = training_set_link(model_dir, read_manifest(model_dir), lake)
    return augmented, resolve_upstream(augmented, NORMALIZED, Path(lake))


def resolve_chain(model_dir: Path, lake: Path) -> Chain:
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    data = manifest.get("data") or {}
    augmented = training_set_link(model_dir, manifest, lake)
    normalized = resolve_upstream(augmented, NORMALIZED, lake)
    raw = resolve_upstream(normalized, RAW, lake)
    if manifest.get("kind") == "lora_checkpoint":
        adapter_dir: Path | None = model_dir
    else:
        adapter_dir = Path(manifest["adapter_dir"]) if manifest.get("adapter_dir") else None
    base_dir = manifest.get("base_model_dir") or (manifest.get("base_model") or {}).get("path")
    chain = Chain(
        model_dir=model_dir,
        manifest=manifest,
        adapter_dir=adapter_dir,
        base_model_dir=Path(base_dir) if base_dir else None,
        augmented=augmented,
        normalized=normalized,
        raw=raw,
        raw_files_md5=dict(data.get("raw_files_md5") or {}),
    )
    augmented_rows = read_link(augmented, ["source_index", "split", "command_names"])
    chain.per_command = per_command_counts(augmented_rows)
    raw_rows = read_link(raw, ["source_file", "file_sha256"]).drop_duplicates()
    chain.raw_files_in_table = dict(zip(raw_rows["source_file"], raw_rows["file_sha256"], strict=True))
    return chain


def per_command_counts(augmented_rows) -> dict[str, dict[str, int]]:
    """command -> {"train": n, "eval": n}: distinct source_index records using that command."""
    counts: dict[str, Counter] = {}
    unique = augmented_rows.drop_duplicates(subset=["source_index", "split"])
    for split, names in zip(unique["split"], unique["command_names"], strict=True):
        for name in sorted(set(list(names))):
            counts.setdefault(name, Counter())[split] += 1
    return {name: {"train": c.get("train", 0), "eval": c.get("eval", 0)} for name, c in sorted(counts.items())}


def training_raw_records(chain: Chain, split: str = "train"):
    """The raw table rows behind the given split of the training set, at the recorded versions."""
    augmented = read_link(chain.augmented, ["source_index", "split"])
    wanted = augmented if split == "all" else augmented[augmented["split"] == split]
    wanted_ids = set(wanted["source_index"])
    normalized = read_link(chain.normalized, ["source_index", "source_file", "line_number"])
    used = normalized[normalized["source_index"].isin(wanted_ids)].drop_duplicates("source_index")
    missing = wanted_ids - set(used["source_index"])
    if missing:
        raise LineageError(
            f"{NORMALIZED} v{chain.normalized.version} lacks {len(missing)} source_index value(s) of "
            f"{chain.augmented.table} v{chain.augmented.version} (e.g. {sorted(missing)[0]})"
        )
    raw = read_link(chain.raw, ["source_file", "line_number", "raw_line"])
    joined = used.merge(raw, on=["source_file", "line_number"], how="left", validate="one_to_one")
    if joined["raw_line"].isna().any():
        first = joined[joined["raw_line"].isna()].iloc[0]
        raise LineageError(
            f"{RAW} v{chain.raw.version} lacks the line {first['source_file']}:{first['line_number']} "
            f"that {NORMALIZED} v{chain.normalized.version} came from"
        )
    return joined.sort_values(["source_file", "line_number"], kind="stable").reset_index(drop=True)


def export_records(chain: Chain, out_path: Path, split: str = "train") -> int:
    records = training_raw_records(chain, split)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as handle:
        for line in records["raw_line"]:
            handle.write(line.rstrip("\n") + "\n")
    return len(records)


def _weights_hash(model_dir: Path) -> str:
    from pipelines.lineage.manifest import sha256_weights

    return sha256_weights(model_dir)


def verify(chain: Chain, raw_dir: Path) -> list[str]:
    """One line per artifact whose content differs from what the manifest recorded at training time."""
    from pipelines.data.fingerprints import file_md5
    from pipelines.data.ingest import corpus_md5s
    from pipelines.lineage.manifest import frame_content_hash

    manifest, problems = chain.manifest, []

    def check(name: str, expected: str | None, compute) -> None:
        if not expected:
            return
        try:
            actual = compute()
        except (OSError, LineageError) as error:
            problems.append(f"{name}: cannot recompute ({error})")
            return
        if actual != expected:
            problems.append(f"{name}: expected {expected[:16]}..., found {actual[:16]}...")

    if manifest.get("kind") == "merged_model":
        check(f"merged model weights ({chain.model_dir})", manifest.get("merged_weights_sha256"),
              lambda: _weights_hash(chain.model_dir))
    if chain.adapter_dir is not None:
        check(
            f"adapter ({chain.adapter_dir})", manifest.get("adapter_sha256"), lambda: _weights_hash(chain.adapter_dir)
        )
    if chain.base_model_dir is not None:
        check(f"base model ({chain.base_model_dir})", (manifest.get("base_model") or {}).get("weights_sha256"),
              lambda: _weights_hash(chain.base_model_dir))

    def augmented_hash() -> str:
        frame = read_link(chain.augmented)
        return frame_content_hash(frame, sort_by="sample_id" if "sample_id" in frame.columns else None)

    check(f"{chain.augmented.table} v{chain.augmented.version}", (manifest.get("data") or {}).get("content_hash"),
          augmented_hash)
    try:
        training_raw_records(chain, "all")
    except LineageError as error:
        problems.append(f"data tables: {error}")

    for name, md5 in sorted(chain.raw_files_md5.items()):
        path = Path(raw_dir) / name
        if not path.is_file():
            problems.append(f"raw file {name}: deleted (was md5 {md5})")
        elif (now := file_md5(path)) != md5:
            problems.append(f"raw file {name}: md5 was {md5}, now {now}")
    # The corpus as ingest reads it: a file it would train on now but that the model never saw is a change
    # too (the retrain sensor fires on the same files); other files in raw_dir are not the corpus.
    for name in sorted(set(corpus_md5s(raw_dir)) - set(chain.raw_files_md5)):
        problems.append(f"raw file {name}: added since training (not in the data the model was trained on)")
    return problems


def render_chain(chain: Chain) -> list[str]:
    manifest, data = chain.manifest, chain.manifest.get("data") or {}
    git = manifest.get("git") or {}
    config = manifest.get("training_config") or {}
    lines = []
    if manifest.get("kind") == "merged_model":
        lines.append(f"merged model      {chain.model_dir}  weights sha256 {manifest.get('merged_weights_sha256')}")
    if chain.adapter_dir is not None:
        lines.append(f"<- adapter        {chain.adapter_dir}  sha256 {manifest.get('adapter_sha256')}")
    base = manifest.get("base_model") or {}
    lines.append(f"   base model     {base.get('source', chain.base_model_dir)}  sha256 {base.get('weights_sha256')}")
    shown = {key: config[key] for key in ("profile", "learning_rate", "num_train_epochs", "max_steps", "lora_r",
                                          "lora_alpha", "seed") if key in config}
    lines.append(f"<- training config {json.dumps(shown, sort_keys=True)}")
    lines.append(f"<- {chain.augmented.table} Delta v{chain.augmented.version}  content sha256 "
                 f"{data.get('content_hash')}  ({chain.augmented.path})")
    lines.append(f"<- {NORMALIZED} Delta v{chain.normalized.version}  ({chain.normalized.how})")
    lines.append(f"<- {RAW} Delta v{chain.raw.version}  ({chain.raw.how})")
    dirty = " (working tree dirty)" if git.get("dirty") else ""
    lines.append(f"<- raw files at git commit {git.get('commit')}{dirty}")
    for name in sorted(set(chain.raw_files_md5) | set(chain.raw_files_in_table)):
        md5 = chain.raw_files_md5.get(name, "-")
        sha = chain.raw_files_in_table.get(name, "-")
        lines.append(f"     {name}  dvc md5 {md5}  sha256 at ingest {sha}")
    lines.append("")
    lines.append("source_index records per command   train   eval")
    for name, counts in chain.per_command.items():
        lines.append(f"  {name:<32} {counts['train']:>6} {counts['eval']:>6}")
    return lines


def render_chain_markdown(chain: Chain) -> str:
    """The same chain for the Dagster UI (asset metadata)."""
    body = "\n".join(render_chain(chain))
    return f"```\n{body}\n```"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="a merged model or adapter directory holding lineage.json")
    parser.add_argument("--lake", type=Path, default=None, help="lake root (default: $SOP2CMD_LAKE or ./lake)")
    parser.add_argument(
        "--raw-dir", type=Path, default=None, help="raw corpus dir (default: params.yaml data.raw_dir)"
    )
    parser.add_argument("--records", type=Path, default=None, metavar="OUT.jsonl",
                        help="write the raw lines of the records that trained the model (Delta time travel)")
    parser.add_argument("--split", choices=("train", "eval", "all"), default="train",
                        help="which split's records --records exports (default: train)")
    parser.add_argument("--verify", action="store_true",
                        help="recompute every hash; exit 1 naming each artifact changed since training")
    parser.add_argument("--json", action="store_true", help="print the chain as JSON instead of text")


def _default_raw_dir() -> Path:
    from pipelines.config import load_params

    return Path(load_params().data.raw_dir)


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from pipelines.config import lake_root

    try:
        chain = resolve_chain(args.model_dir, args.lake or lake_root())
    except LineageError as error:
        print(f"lineage: {error}", file=err)
        return 2
    if args.json:
        print(json.dumps(chain_as_dict(chain), indent=2, default=str), file=out)
    else:
        print("\n".join(render_chain(chain)), file=out)
    status = 0
    if args.records is not None:
        try:
            count = export_records(chain, args.records, args.split)
        except LineageError as error:
            print(f"lineage: {error}", file=err)
            return 2
        print(f"\nwrote {count} raw record(s) ({args.split} split) to {args.records}", file=out)
    if args.verify:
        problems = verify(chain, args.raw_dir or _default_raw_dir())
        if problems:
            print("\nVERIFY FAILED: changed since training:", file=out)
            for problem in problems:
                print(f"  CHANGED {problem}", file=out)
            status = 1
        else:
            print("\nverify: every recorded hash matches", file=out)
    return status


def chain_as_dict(chain: Chain) -> dict[str, Any]:
    return {
        "model_dir": str(chain.model_dir),
        "kind": chain.manifest.get("kind"),
        "merged_weights_sha256": chain.manifest.get("merged_weights_sha256"),
        "adapter_dir": str(chain.adapter_dir) if chain.adapter_dir else None,
        "adapter_sha256": chain.manifest.get("adapter_sha256"),
        "training_config": chain.manifest.get("training_config"),
        "tables": {link.table: {"version": link.version, "path": str(link.path), "how": link.how}
                   for link in (chain.augmented, chain.normalized, chain.raw)},
        "raw_files_md5": chain.raw_files_md5,
        "git": chain.manifest.get("git"),
        "per_command": chain.per_command,
    }


def chain_markdown(model_dir: Path, lake: Path) -> str:
    """The chain as markdown for asset metadata; an unresolvable chain is shown, not raised."""
    try:
        return render_chain_markdown(resolve_chain(Path(model_dir), Path(lake)))
    except (LineageError, OSError, KeyError, ValueError) as error:
        return f"**lineage unresolved**: {error}"
