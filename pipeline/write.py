"""The files of a finished search, each written atomically: ``candidates.csv`` (and
``candidates.parquet`` where pyarrow is installed), the specs of the top-k, of the pool that
training decides among and of the reference models under ``specs/``, and the report."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from nas.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.loop import Search
from pipeline.ranking import rank_candidates, spec_of, training_pool
from results.report import build_report
from results.run import CANDIDATES, DRAWS, SPECS, spec_file_name


def write_results(search: Search, run_dir: Path) -> pd.DataFrame:
    """Rank the search's candidates and write the run's files; returns the candidates table."""
    settings = search.settings
    table = rank_candidates(*search.gathered(), search.spaces, settings)
    atomic_write_text(run_dir / CANDIDATES, table.to_csv(index=False))
    atomic_write_json(
        run_dir / DRAWS, {**search.counts_dict(), "seconds": round(search.seconds, 2)}
    )
    try:
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        atomic_write_bytes(run_dir / "candidates.parquet", buffer.getvalue())
    except ImportError:
        pass  # pyarrow is optional
    specs = run_dir / SPECS
    specs.mkdir(exist_ok=True)
    top = table[table["reference"] == ""].head(settings.top)
    pool = training_pool(table, settings.train_top)
    for _, row in pd.concat([top, pool]).drop_duplicates("arch_id").iterrows():
        spec = spec_of(row, search.spaces, settings)
        spec = spec.replace(name=spec_file_name(row["rank"], row["arch_id"]))
        atomic_write_text(specs / f"{spec.name}.json", spec.to_json() + "\n")
    for _, row in table[table["reference"] != ""].iterrows():  # the reference models too
        spec = spec_of(row, search.spaces, settings)
        spec = spec.replace(name=spec_file_name(None, row["arch_id"], row["reference"]))
        atomic_write_text(specs / f"{spec.name}.json", spec.to_json() + "\n")
    build_report(run_dir)
    return table
