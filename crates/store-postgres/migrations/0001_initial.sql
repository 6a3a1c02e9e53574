-- Stampede's schema on PostgreSQL (cluster mode): the same tables, columns
-- and rules as the embedded SQLite schema (crates/store-sqlite/migrations),
-- so both stores answer alike. Ids are TEXT UUIDs as `Display` prints them
-- (server-made UUIDv7 ids sort by creation), timestamps BIGINT milliseconds
-- since the Unix epoch, money BIGINT minor units beside a currency code.
-- Ids compare byte by byte (`COLLATE "C"`), as in SQLite, so id order is
-- creation order whatever the database's locale.

CREATE TABLE products (
    id          TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    sku         TEXT   NOT NULL CONSTRAINT products_sku_unique UNIQUE,
    name        TEXT   NOT NULL,
    price_cents BIGINT NOT NULL,
    currency    TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE sales (
    id                  TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    product_id          TEXT   NOT NULL REFERENCES products (id),
    price_cents         BIGINT NOT NULL,
    currency            TEXT   NOT NULL,
    quantity            BIGINT NOT NULL,
    -- The source of truth for stock: decremented only under the row's lock
    -- after checking what is left, so the CHECK is the last line of I1.
    remaining           BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= quantity),
    per_user_limit      BIGINT NOT NULL,
    starts_at           BIGINT NOT NULL,
    ends_at             BIGINT,
    payment_window_secs BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);

CREATE TABLE orders (
    id              TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    user_id         TEXT   NOT NULL,
    sale_id         TEXT   NOT NULL REFERENCES sales (id),
    product_id      TEXT   NOT NULL,
    quantity        BIGINT NOT NULL,
    amount_cents    BIGINT NOT NULL,
    currency        TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN
                        ('pending', 'awaiting_payment', 'paid', 'fulfilled', 'cancelled')),
    idempotency_key TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- I4: one order per user and key, across every node. Also serves
    -- `orders_of` (by user).
    CONSTRAINT orders_key_unique UNIQUE (user_id, idempotency_key)
);

-- A sale's orders (counts, holdings) and the foreign key to `sales`.
CREATE INDEX orders_by_sale ON orders (sale_id);

-- The expiry sweep: open orders by the end of their payment window. Partial,
-- so it stays the size of the open backlog.
CREATE INDEX orders_expiring ON orders (expires_at)
    WHERE status IN ('pending', 'awaiting_payment');

CREATE TABLE users (
    id            TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    email         TEXT   NOT NULL CONSTRAINT users_email_unique UNIQUE,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One attempt to pay an order; at most one in flight per order (checked
-- under the order's row lock).
CREATE TABLE payments (
    id              TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    order_id        TEXT    NOT NULL REFERENCES orders (id),
    amount_cents    BIGINT  NOT NULL,
    currency        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('requested', 'submitted', 'approved', 'declined', 'failed')),
    provider_ref    TEXT,
    -- Approved after the order was cancelled or expired (I7).
    refund_required BOOLEAN NOT NULL DEFAULT false,
    reason          TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE INDEX payments_by_order ON payments (order_id);

-- The transactional outbox (I8) as a log read by position. A sequence alone
-- hands out numbers in insert order, not commit order: with concurrent
-- writers, seq 11 can commit before seq 10, and a consumer that has read 11
-- would skip 10 for ever. So every transaction that writes events takes one
-- transaction-scoped advisory lock just before its outbox rows and keeps it
-- until it commits (src/outbox.rs): numbers are then handed out and committed
-- in the same order, as with SQLite's single writer.
CREATE TABLE outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT   NOT NULL,  -- UUIDv7: consumers deduplicate by it
    event_type   TEXT   NOT NULL,
    aggregate_id TEXT   NOT NULL,
    payload      JSON   NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE INDEX outbox_by_aggregate ON outbox (aggregate_id, seq);

-- Each consumer's position in the outbox; only ever moves forward.
CREATE TABLE consumer_cursors (
    consumer TEXT   NOT NULL PRIMARY KEY,
    seq      BIGINT NOT NULL CHECK (seq >= 0)
);

CREATE TABLE webhook_subscriptions (
    id          TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    url         TEXT   NOT NULL,
    event_types TEXT   NOT NULL,  -- a JSON array of event types, or ["*"]
    secret      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    subscription_id TEXT   NOT NULL
                        REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_seq       BIGINT NOT NULL,
    event_id        TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    last_status     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, id);
