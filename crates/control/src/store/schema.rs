//! The control plane's SQL schema. Plain SQL (TEXT, BIGINT, BOOLEAN, `ON CONFLICT`) so it can
//! move to PostgreSQL.

/// The schema version this code writes; a database with a higher one is refused.
pub(super) const SCHEMA_VERSION: i64 = 9;

/// The changes after version 1, in order: `(version, SQL)`. `SCHEMA` creates version 1; a
/// database older than a migration gets it at open, in one transaction with its version.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (2, TOKEN_SCOPES),
    (3, REGISTRY_LOGINS),
    (4, HOST_CREDENTIALS),
    (5, JOIN_TOKENS),
    (6, SECRETS_VERSIONS),
    (7, CERTIFICATE_SOURCES),
    (8, VOLUME_SETTINGS),
    (9, RELEASE_CONFIGS),
];

/// Version 9: each release keeps the config file it deployed (`aloft config save`).
const RELEASE_CONFIGS: &str = "
ALTER TABLE releases ADD COLUMN config TEXT;
";

/// Version 2: API tokens get an id, a scope (`app_id`: NULL for org-wide, else the one app of a
/// deploy token), an expiry and a revocation time. Tokens made before stay org-wide, never
/// expire, and get the first 16 hex characters of their hash as id.
const TOKEN_SCOPES: &str = "
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN app_id TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
UPDATE api_tokens SET id = substr(token_hash, 1, 16) WHERE id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_by_id ON api_tokens (id);
CREATE INDEX IF NOT EXISTS api_tokens_by_org ON api_tokens (org_slug);
";

/// Version 3: the org's credentials for third-party registries (`aloft registry login`), the
/// password sealed like app secrets (see `crate::registry_logins`).
const REGISTRY_LOGINS: &str = "
CREATE TABLE IF NOT EXISTS registry_logins (
    org_slug     TEXT NOT NULL REFERENCES orgs (slug),
    host         TEXT NOT NULL,
    username     TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (org_slug, host)
);
";

/// Version 4: each host's own credential (only its SHA-256), issued once per host id; it reads
/// that host's machines' secrets and its volumes' keys (see `crate::hosts`). Its own table: a
/// host gets it before its first heartbeat makes its `hosts` row.
const HOST_CREDENTIALS: &str = "
CREATE TABLE IF NOT EXISTS host_credentials (
    host_id          TEXT PRIMARY KEY,
    credential_hash  TEXT NOT NULL UNIQUE,
    created_at       BIGINT NOT NULL
);
";

/// Version 5: one-time join tokens (only their SHA-256): a host trades one for its credential
/// at its first start (see `crate::join`). `host_id` NULL: any host id may use it.
const JOIN_TOKENS: &str = "
CREATE TABLE IF NOT EXISTS join_tokens (
    token_hash   TEXT PRIMARY KEY,
    host_id      TEXT,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
";

/// Version 6: each app's secrets get a version (1 more after every change; apps that had
/// secrets start at 1), and each secret its `updated_at` beside `created_at` (until now
/// `created_at` was when it was last set, so both start there).
const SECRETS_VERSIONS: &str = "
ALTER TABLE apps ADD COLUMN secrets_version BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET secrets_version = 1 WHERE name IN (SELECT app_name FROM secrets);
ALTER TABLE secrets ADD COLUMN updated_at BIGINT;
UPDATE secrets SET updated_at = created_at;
";

/// Version 7: a hostname holds a custom certificate, a request for a managed one
/// (`acme_requested`), both or neither, and when a certificate of it last changed. A hostname
/// added before with a certificate keeps it as its custom one; one added without (served by
/// the development CA) becomes managed.
const CERTIFICATE_SOURCES: &str = "
ALTER TABLE certificates ADD COLUMN acme_requested BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE certificates ADD COLUMN updated_at BIGINT;
UPDATE certificates SET acme_requested = TRUE WHERE certificate IS NULL;
UPDATE certificates SET updated_at = created_at;
";

/// Version 8: a volume's snapshot settings (retention in days, the reference's default 5;
/// whether scheduled snapshots are wanted), and per snapshot the volume's size when taken, the
/// digest of its bytes and its retention. Snapshots recorded before have none of the three.
const VOLUME_SETTINGS: &str = "
ALTER TABLE volumes ADD COLUMN snapshot_retention BIGINT NOT NULL DEFAULT 5;
ALTER TABLE volumes ADD COLUMN auto_backup_enabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE volume_snapshots ADD COLUMN volume_size BIGINT;
ALTER TABLE volume_snapshots ADD COLUMN digest TEXT;
ALTER TABLE volume_snapshots ADD COLUMN retention_days BIGINT;
";

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS orgs (
    slug        TEXT PRIMARY KEY,
    network_id  BIGINT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash  TEXT PRIMARY KEY,
    org_slug    TEXT NOT NULL REFERENCES orgs (slug),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    org_slug    TEXT NOT NULL REFERENCES orgs (slug),
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS apps_by_org ON apps (org_slug);
CREATE TABLE IF NOT EXISTS hosts (
    id                   TEXT PRIMARY KEY,
    region               TEXT NOT NULL,
    address              TEXT NOT NULL,
    runtime              TEXT NOT NULL,
    cpus                 BIGINT NOT NULL,
    memory_mb            BIGINT NOT NULL,
    allocated_cpus       BIGINT NOT NULL,
    allocated_memory_mb  BIGINT NOT NULL,
    last_seen            BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS host_numbers (
    host_id     TEXT PRIMARY KEY,
    number      BIGINT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS mesh_members (
    host_id     TEXT PRIMARY KEY REFERENCES host_numbers (host_id),
    region      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    endpoint    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS machines (
    id          TEXT PRIMARY KEY,
    app_name    TEXT NOT NULL REFERENCES apps (name),
    host_id     TEXT NOT NULL REFERENCES hosts (id),
    name        TEXT NOT NULL,
    destroyed   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS machines_by_app ON machines (app_name);
CREATE TABLE IF NOT EXISTS releases (
    app_name     TEXT NOT NULL REFERENCES apps (name),
    version      BIGINT NOT NULL,
    image        TEXT NOT NULL,
    strategy     TEXT NOT NULL,
    status       TEXT NOT NULL,
    description  TEXT,
    reason       TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (app_name, version)
);
CREATE TABLE IF NOT EXISTS secrets (
    app_name     TEXT NOT NULL REFERENCES apps (name),
    name         TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    digest       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (app_name, name)
);
CREATE TABLE IF NOT EXISTS volumes (
    id                   TEXT PRIMARY KEY,
    app_name             TEXT NOT NULL REFERENCES apps (name),
    name                 TEXT NOT NULL,
    region               TEXT NOT NULL,
    host_id              TEXT NOT NULL,
    size_gb              BIGINT NOT NULL,
    key_nonce            TEXT NOT NULL,
    key_ciphertext       TEXT NOT NULL,
    attached_machine_id  TEXT,
    created_at           BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS volumes_by_app ON volumes (app_name);
CREATE TABLE IF NOT EXISTS volume_snapshots (
    id           TEXT PRIMARY KEY,
    volume_id    TEXT NOT NULL REFERENCES volumes (id),
    size         BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    hostname     TEXT PRIMARY KEY,
    app_name     TEXT NOT NULL REFERENCES apps (name),
    certificate  TEXT,
    private_key  TEXT,
    created_at   BIGINT NOT NULL
);
";
