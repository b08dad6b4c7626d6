-- Key rows bound to the deployment that made them, data-key generations that retire, and
-- tombstones (docs/vault.md, "Forget and final erasure").

-- 1. Binding. A key row names its deployment (bound into the KMS encryption context too) and
-- carries an HMAC over its fields under a key derived from tokenization key v1, which only
-- the vault can compute: a row inserted behind the vault's back does not verify and is refused.
-- Rows made before this migration are marked legacy: they keep their old encryption context
-- and are accepted with a warning. The runtime role can neither set `legacy` nor alter a row's
-- identity: it inserts the listed columns and updates only what retirement changes.
ALTER TABLE vault.keys
    ADD COLUMN deployment      text,
    ADD COLUMN binding         bytea,
    ADD COLUMN legacy          boolean NOT NULL DEFAULT false,
    ADD COLUMN retired_at      timestamptz,
    ADD COLUMN kms_deletion_at timestamptz,
    ALTER COLUMN wrapped DROP NOT NULL;
UPDATE vault.keys SET legacy = true;
ALTER TABLE vault.keys
    ADD CONSTRAINT keys_bound CHECK (legacy OR (deployment IS NOT NULL AND binding IS NOT NULL)),
    -- 2. Retirement: a data key generation that nothing needs any more loses its wrapped key.
    -- Tokenization keys never retire (tokens name their version for ever).
    ADD CONSTRAINT keys_retired_iff_unwrapped CHECK ((wrapped IS NULL) = (retired_at IS NOT NULL)),
    ADD CONSTRAINT keys_only_data_retires CHECK (purpose = 'data' OR retired_at IS NULL);

REVOKE INSERT ON vault.keys FROM fetchreward_vault_runtime;
GRANT INSERT (purpose, version, wrapped, kms_key_id, activates_at, deployment, binding)
    ON vault.keys TO fetchreward_vault_runtime;
GRANT UPDATE (wrapped, retired_at, kms_deletion_at) ON vault.keys TO fetchreward_vault_runtime;

-- 3. Tombstones: a forgotten value that is tokenized again is not stored again unless an admin
-- restores its token (VAULT_FORGET_MODE=tombstone, the default). Values forgotten before this
-- migration become tombstones: they were forgotten to be erased.
ALTER TABLE vault.pii_tokens ADD COLUMN tombstone boolean NOT NULL DEFAULT false;
UPDATE vault.pii_tokens SET tombstone = true WHERE forgotten_at IS NOT NULL;
ALTER TABLE vault.pii_tokens
    ADD CONSTRAINT pii_tokens_tombstone_is_forgotten CHECK (NOT tombstone OR forgotten_at IS NOT NULL);

-- 4. A stored original that its data key does not open (a damaged row) is marked, not retried
-- for ever: rewrap skips it and reports it, and its generation may still retire.
ALTER TABLE vault.pii_tokens ADD COLUMN unreadable_at timestamptz;

DROP INDEX IF EXISTS vault.pii_tokens_data_key_version;
CREATE INDEX IF NOT EXISTS pii_tokens_live_data_key_version
    ON vault.pii_tokens (data_key_version) WHERE ciphertext IS NOT NULL AND unreadable_at IS NULL;
