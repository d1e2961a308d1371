-- The pharmacy / retail back office: one database per tenant, so no tenant_id columns.
-- Expand/contract rule for migration authors: a migration must keep working for code that
-- expects the previous version (add columns nullable or with defaults, never rename or drop in
-- the same release that stops using them), because tenants sit on both sides of a rollout.

CREATE TABLE branches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address     text,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL CHECK (position('@' IN email) > 1),
    display_name    text,
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'staff', 'read_only')),
    branch_id       bigint REFERENCES branches (id),
    is_active       boolean NOT NULL DEFAULT true,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE suppliers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    contact_name  text,
    email         text,
    phone         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku                  text NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 64),
    barcode              text UNIQUE,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    unit                 text NOT NULL DEFAULT 'each',
    cost_price_cents     bigint NOT NULL DEFAULT 0 CHECK (cost_price_cents >= 0),
    sale_price_cents     bigint NOT NULL DEFAULT 0 CHECK (sale_price_cents >= 0),
    requires_prescription boolean NOT NULL DEFAULT false,
    default_supplier_id  bigint REFERENCES suppliers (id),
    reorder_level        numeric(14, 3) NOT NULL DEFAULT 0,
    is_active            boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stock_levels (
    branch_id   bigint NOT NULL REFERENCES branches (id),
    item_id     bigint NOT NULL REFERENCES items (id),
    quantity    numeric(14, 3) NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (branch_id, item_id)
);
CREATE INDEX stock_levels_item_idx ON stock_levels (item_id);

CREATE TABLE purchases (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    branch_id     bigint NOT NULL REFERENCES branches (id),
    supplier_id   bigint NOT NULL REFERENCES suppliers (id),
    reference     text,
    status        text NOT NULL DEFAULT 'received' CHECK (status IN ('draft', 'received', 'cancelled')),
    total_cents   bigint NOT NULL DEFAULT 0,
    created_by    bigint REFERENCES users (id),
    received_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE purchase_lines (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purchase_id      bigint NOT NULL REFERENCES purchases (id) ON DELETE CASCADE,
    item_id          bigint NOT NULL REFERENCES items (id),
    quantity         numeric(14, 3) NOT NULL CHECK (quantity > 0),
    unit_cost_cents  bigint NOT NULL CHECK (unit_cost_cents >= 0)
);
CREATE INDEX purchase_lines_purchase_idx ON purchase_lines (purchase_id);

CREATE TABLE sales (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    branch_id     bigint NOT NULL REFERENCES branches (id),
    status        text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'voided')),
    total_cents   bigint NOT NULL DEFAULT 0,
    sold_by       bigint REFERENCES users (id),
    sold_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sales_sold_at_idx ON sales (sold_at);

CREATE TABLE sale_lines (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sale_id           bigint NOT NULL REFERENCES sales (id) ON DELETE CASCADE,
    item_id           bigint NOT NULL REFERENCES items (id),
    quantity          numeric(14, 3) NOT NULL CHECK (quantity > 0),
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE INDEX sale_lines_sale_idx ON sale_lines (sale_id);

CREATE TABLE stock_take_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    branch_id     bigint NOT NULL REFERENCES branches (id),
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'cancelled')),
    started_by    bigint REFERENCES users (id),
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

CREATE TABLE stock_take_counts (
    session_id        bigint NOT NULL REFERENCES stock_take_sessions (id) ON DELETE CASCADE,
    item_id           bigint NOT NULL REFERENCES items (id),
    expected_quantity numeric(14, 3) NOT NULL,
    counted_quantity  numeric(14, 3) NOT NULL CHECK (counted_quantity >= 0),
    counted_by        bigint REFERENCES users (id),
    counted_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, item_id)
);
