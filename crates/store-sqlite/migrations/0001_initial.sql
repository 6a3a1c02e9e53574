-- Stampede's first schema. Ids are TEXT UUIDs as `Display` prints them
-- (hyphenated, lower case), so server-made UUIDv7 ids sort by creation;
-- timestamps are INTEGER milliseconds since the Unix epoch; money is INTEGER
-- minor units beside a three-letter currency code.
--
-- Indexes are kept few on purpose: every index is another b-tree written on
-- the hot insert path, and past 64 rows per commit page writes, not fsync,
-- are the cost (docs/stack.md).

CREATE TABLE products (
    id          TEXT    NOT NULL PRIMARY KEY,
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    price_cents INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE sales (
    id                  TEXT    NOT NULL PRIMARY KEY,
    product_id          TEXT    NOT NULL REFERENCES products (id),
    price_cents         INTEGER NOT NULL,
    currency            TEXT    NOT NULL,
    quantity            INTEGER NOT NULL,
    -- The source of truth for stock: decremented only by a conditional
    -- UPDATE (`remaining >= ?`), so the CHECK is the last line of I1.
    remaining           INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= quantity),
    per_user_limit      INTEGER NOT NULL,
    starts_at           INTEGER NOT NULL,
    ends_at             INTEGER,
    payment_window_secs INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE orders (
    id              TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    sale_id         TEXT    NOT NULL REFERENCES sales (id),
    product_id      TEXT    NOT NULL,
    quantity        INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL,
    currency        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'awaiting_payment', 'paid', 'fulfilled', 'cancelled')),
    idempotency_key TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- I4: one order per user and key. Also serves `orders_of` (by user).
    UNIQUE (user_id, idempotency_key)
);

-- A sale's orders (sale counts, holdings) and the index the foreign key to
-- `sales` needs. On `sale_id` alone on purpose: its entries are
-- (sale_id, rowid), so a hot sale's inserts append to one page, where
-- (sale_id, user_id) would put every order on a random page. Measured with
-- random buyer ids, 256 orders per commit: 38k orders/s against 20k.
CREATE INDEX orders_by_sale ON orders (sale_id);

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- The transactional outbox (I8): one row per state change, written in the
-- change's transaction; a relay publishes pending rows and stamps them.
CREATE TABLE outbox (
    id           TEXT    NOT NULL PRIMARY KEY,  -- UUIDv7: consumers deduplicate by it
    event_type   TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    payload      TEXT    NOT NULL,              -- a JSON object
    created_at   INTEGER NOT NULL,
    published_at INTEGER
);

-- Only what the relay still has to publish; stays small however long the
-- outbox grows.
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
