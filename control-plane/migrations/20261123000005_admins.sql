-- Super-admins: argon2id password plus a TOTP second factor (its secret sealed like every other
-- secret). Sessions are random bearer tokens stored only as SHA-256 hashes.
CREATE TABLE admin_users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL,
    password_hash       text NOT NULL,
    sealed_totp_secret  bytea NOT NULL,
    totp_key_id         text NOT NULL,
    -- The last TOTP time step accepted: a code is never accepted twice.
    last_totp_step      bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz
);
CREATE UNIQUE INDEX admin_users_email_idx ON admin_users (lower(email));

CREATE TABLE admin_sessions (
    token_sha256  bytea PRIMARY KEY,
    admin_id      uuid NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX admin_sessions_admin_idx ON admin_sessions (admin_id);
