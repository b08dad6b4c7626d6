-- The audit trail becomes append-only and tamper-evident (docs/security.md, "The audit trail").

-- 1. A hash chain: each row carries a link, an HMAC (under a key only the vault holds) over the
-- previous row's link and its own fields. Rows written before this migration keep NULL: the
-- chain starts at the first row written after it.
ALTER TABLE vault.audit_log ADD COLUMN link bytea;

-- The newest link, so that replicas append one after another (the row is locked for the
-- append) and a removed tail shows as a head that names a missing row.
CREATE TABLE vault.audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id  bigint  NOT NULL,
    link     bytea   NOT NULL
);

-- 2. A second wall behind the privileges: no UPDATE, DELETE or TRUNCATE of the trail, by
-- anyone, the owner included (who would have to drop the trigger first, which needs the owner
-- role, never the vault's runtime role).
CREATE FUNCTION vault.audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vault.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON vault.audit_log
    FOR EACH ROW EXECUTE FUNCTION vault.audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON vault.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vault.audit_log_is_append_only();

-- 3. The runtime role. Deployments log the vault in as a role that is a member of this one
-- (GRANT fetchreward_vault_runtime TO <login role>) and run the migrations as the schema's
-- owner (DATABASE_MIGRATION_URL). The runtime role may read and append to the trail, never
-- change it. Roles are cluster-wide: creating it twice at once is not an error.
DO $$
BEGIN
    CREATE ROLE fetchreward_vault_runtime NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA vault TO fetchreward_vault_runtime;
GRANT SELECT, INSERT ON vault.keys TO fetchreward_vault_runtime;
GRANT SELECT, INSERT, UPDATE ON vault.pii_tokens TO fetchreward_vault_runtime;
GRANT SELECT, INSERT ON vault.audit_log TO fetchreward_vault_runtime;
GRANT USAGE ON SEQUENCE vault.audit_log_id_seq TO fetchreward_vault_runtime;
GRANT SELECT, INSERT, UPDATE ON vault.audit_head TO fetchreward_vault_runtime;
-- diesel's migration bookkeeping, which the vault reads at start to know nothing is pending.
GRANT SELECT ON vault.__diesel_schema_migrations TO fetchreward_vault_runtime;

-- The chain's start: no row yet, an empty link.
INSERT INTO vault.audit_head (last_id, link) VALUES (0, ''::bytea);
