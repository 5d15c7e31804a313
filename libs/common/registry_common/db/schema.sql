-- Registry metadata. Applying this file again to a database that has it changes nothing.
-- The first six tables and their columns are those of the Go service this one replaces;
-- other systems read them, so their names stay.

-- A repository is '<project>/<path>'; namespace is the Deploys project.
CREATE TABLE IF NOT EXISTS repositories (
    name       text PRIMARY KEY,
    namespace  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS repositories_namespace_idx ON repositories (namespace, name);

-- Manifests are stored byte for byte with the media type they were pushed with.
-- content is NULL only for rows migrated from the old service before their bytes arrived.
CREATE TABLE IF NOT EXISTS manifests (
    repository    text NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, digest)
);
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS media_type text NOT NULL DEFAULT '';
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS content bytea;
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS size bigint NOT NULL DEFAULT 0;
-- Digest of the manifest this one refers to (OCI 1.1 referrers).
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS subject text;
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS artifact_type text;
-- The manifest's `annotations` as JSON text (the referrers API lists them). text, not jsonb:
-- jsonb refuses escapes such as \u0000 that JSON allows.
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS annotations text;
CREATE INDEX IF NOT EXISTS manifests_subject_idx
    ON manifests (repository, subject) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS manifests_created_idx ON manifests (repository, created_at DESC);

CREATE TABLE IF NOT EXISTS tags (
    repository text NOT NULL,
    tag        text NOT NULL,
    digest     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, tag),
    FOREIGN KEY (repository, digest) REFERENCES manifests (repository, digest) ON DELETE CASCADE
);
ALTER TABLE tags ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS tags_digest_idx ON tags (repository, digest);
-- tags/list pages in byte order (COLLATE "C"), whatever the database's collation.
CREATE INDEX IF NOT EXISTS tags_listing_idx ON tags (repository, tag COLLATE "C");

-- A blob linked to a repository: the right of that repository to read the blob's bytes.
-- The bytes themselves are stored once per digest (blob_objects).
CREATE TABLE IF NOT EXISTS blobs (
    repository text NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     text NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, digest)
);
-- Grace clock of the link: set on link, refreshed (at most hourly) by HEAD, GET and mount.
ALTER TABLE blobs ADD COLUMN IF NOT EXISTS accessed_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS blobs_digest_idx ON blobs (digest);
CREATE INDEX IF NOT EXISTS blobs_accessed_idx ON blobs (accessed_at);

-- Which blobs a manifest references (config, layers); filled on push and by indexManifests.
CREATE TABLE IF NOT EXISTS manifest_blobs (
    repository      text NOT NULL,
    manifest_digest text NOT NULL,
    blob_digest     text NOT NULL,
    PRIMARY KEY (repository, manifest_digest, blob_digest),
    FOREIGN KEY (repository, manifest_digest)
        REFERENCES manifests (repository, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_blobs_blob_idx ON manifest_blobs (repository, blob_digest);

CREATE TABLE IF NOT EXISTS project_storage_usage (
    namespace  text PRIMARY KEY,
    size       bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which manifests an index (or manifest list) contains, so a child is not deleted under it.
CREATE TABLE IF NOT EXISTS manifest_children (
    repository    text NOT NULL,
    parent_digest text NOT NULL,
    child_digest  text NOT NULL,
    PRIMARY KEY (repository, parent_digest, child_digest),
    FOREIGN KEY (repository, parent_digest)
        REFERENCES manifests (repository, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_children_child_idx
    ON manifest_children (repository, child_digest);

-- One row per blob object in storage (blobs/<algorithm>/<xx>/<hex>), for physical GC.
CREATE TABLE IF NOT EXISTS blob_objects (
    digest     text PRIMARY KEY,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Upload sessions live here rather than in a process or a client-held URL, so any replica can
-- continue any upload. hash_state is the running digest state (raw bytes, never code).
CREATE TABLE IF NOT EXISTS upload_sessions (
    id         uuid PRIMARY KEY,
    repository text NOT NULL,
    size       bigint NOT NULL DEFAULT 0,
    -- Storage keys of the chunks received so far, in order.
    part_keys  text[] NOT NULL DEFAULT '{}',
    hash_state bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS upload_sessions_updated_idx ON upload_sessions (updated_at);
CREATE INDEX IF NOT EXISTS upload_sessions_repository_idx ON upload_sessions (repository);
CREATE INDEX IF NOT EXISTS upload_sessions_created_idx ON upload_sessions (created_at);

-- Per project, the open upload sessions and the bytes they hold: what the upload limits
-- (UPLOAD_SESSIONS_PER_PROJECT, UPLOAD_BYTES_PER_PROJECT) are checked against, under this row's
-- lock. The statements that open, grow and close sessions keep it exact; the INSERT below only
-- counts the sessions of projects that have no row yet (a database from before this table).
CREATE TABLE IF NOT EXISTS upload_usage (
    project      text PRIMARY KEY,
    sessions     integer NOT NULL DEFAULT 0,
    staged_bytes bigint NOT NULL DEFAULT 0
);
INSERT INTO upload_usage (project, sessions, staged_bytes)
SELECT split_part(repository, '/', 1), count(*), sum(size) FROM upload_sessions GROUP BY 1
ON CONFLICT (project) DO NOTHING;
