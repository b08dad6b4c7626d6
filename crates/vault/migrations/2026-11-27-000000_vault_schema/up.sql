-- The vault's tables. Names are schema-qualified although migrations run with
-- search_path = vault, so the statements read the same wherever they are pasted.

-- Wrapped (KMS-encrypted) keys. Plaintext keys are never stored.
CREATE TABLE vault.keys (
    purpose     text        NOT NULL CHECK (purpose IN ('tokenization', 'data')),
    version     integer     NOT NULL CHECK (version >= 1),
    wrapped     bytea       NOT NULL,
    -- The KMS key that wrapped it: what to ask for when unwrapping after a KMS key change.
    kms_key_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, version)
);

-- One row per token ever issued. nonce and ciphertext are NULL once the value is forgotten;
-- the row stays so the token is still known as a pseudonym.
CREATE TABLE vault.pii_tokens (
    token            text        PRIMARY KEY,
    kind             text        NOT NULL CHECK (kind IN ('ip', 'dev')),
    -- The data key (purpose 'data') that encrypted the current ciphertext.
    data_key_version integer     NOT NULL CHECK (data_key_version >= 1),
    nonce            bytea,
    ciphertext       bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    forgotten_at     timestamptz,
    CONSTRAINT pii_tokens_sealed_together CHECK ((nonce IS NULL) = (ciphertext IS NULL)),
    CONSTRAINT pii_tokens_forgotten_iff_empty CHECK ((ciphertext IS NULL) = (forgotten_at IS NOT NULL))
);

-- Every Detokenize and Forget call, allowed or refused. Never holds a value or a token.
CREATE TABLE vault.audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    caller      text        NOT NULL,
    method      text        NOT NULL,
    purpose     text        NOT NULL,
    token_count integer     NOT NULL CHECK (token_count >= 0),
    outcome     text        NOT NULL CHECK (outcome IN ('allowed', 'denied', 'invalid', 'failed')),
    -- Per-status counts of an allowed call; zero otherwise.
    found       integer     NOT NULL DEFAULT 0,
    not_found   integer     NOT NULL DEFAULT 0,
    forgotten   integer     NOT NULL DEFAULT 0
);

CREATE INDEX audit_log_at ON vault.audit_log (at);
CREATE INDEX audit_log_caller_at ON vault.audit_log (caller, at);
