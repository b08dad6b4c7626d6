-- Key rotation: every key version gets the time from which it is used, so that all replicas
-- switch to a new version at the same moment (see docs/vault.md, "Key rotation").

-- Rows that exist already were in use from their creation.
ALTER TABLE vault.keys ADD COLUMN activates_at timestamptz;
UPDATE vault.keys SET activates_at = created_at;
ALTER TABLE vault.keys
    ALTER COLUMN activates_at SET NOT NULL,
    ALTER COLUMN activates_at SET DEFAULT now();

-- Rewrap looks for stored originals under older data keys. Forgotten rows hold no ciphertext
-- and are left out. A plain CREATE INDEX blocks writes to the table while it builds: on a large
-- table, create it beforehand with CREATE INDEX CONCURRENTLY under this name and this
-- migration finds it in place.
CREATE INDEX IF NOT EXISTS pii_tokens_data_key_version
    ON vault.pii_tokens (data_key_version) WHERE ciphertext IS NOT NULL;

-- What an audited admin call did (e.g. which key version a rotation created). Never a value or
-- a token. NULL for Detokenize and Forget, whose counts say it all.
ALTER TABLE vault.audit_log ADD COLUMN detail text;
