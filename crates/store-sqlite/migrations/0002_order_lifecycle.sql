-- The order lifecycle: the expiry sweep's index, payments, the outbox as a
-- log that consumers read by position, and webhook subscriptions with their
-- deliveries. Same conventions as 0001: TEXT UUIDs, INTEGER milliseconds,
-- INTEGER minor units.

-- The expiry sweep (`expire_due`) asks for open orders whose payment window
-- has closed, oldest `expires_at` first. Without this index it scans every
-- order; with it, it reads only the due ones, in order. Partial, so paid and
-- cancelled orders leave it and it stays the size of the open backlog.
--
-- It costs one more b-tree write per order inserted on the purchase path.
-- `expires_at` is `created_at` plus the sale's payment window, so within a
-- sale it grows with time and new entries append to the last page, the cheap
-- case. Measured with tests/throughput.rs (256 orders per commit, FULL, two
-- callers, random buyers; medians of 12 runs on the shared 2-core machine):
-- 48.5k orders/s without it, 46.8k with it (-3.5%); time-ordered buyers
-- 78.9k against 76.2k. The outbox rebuild below pays for it: the
-- schema before this migration ran the same test at 46.5k (75.9k).
--
-- The query must spell the same `IN` list, in the same order, as literals:
-- SQLite uses a partial index only when it can see that the query's WHERE
-- implies the index's (a bound parameter does not show it at prepare time).
CREATE INDEX orders_expiring ON orders (expires_at)
    WHERE status IN ('pending', 'awaiting_payment');

-- One attempt to pay an order. An order has at most one attempt in flight
-- (`requested` or `submitted`); the store checks that in the same
-- transaction as the insert.
CREATE TABLE payments (
    id              TEXT    NOT NULL PRIMARY KEY,
    order_id        TEXT    NOT NULL REFERENCES orders (id),
    amount_cents    INTEGER NOT NULL,
    currency        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('requested', 'submitted', 'approved', 'declined', 'failed')),
    provider_ref    TEXT,
    -- Approved after the order was cancelled or expired (I7): the money goes back.
    refund_required INTEGER NOT NULL DEFAULT 0 CHECK (refund_required IN (0, 1)),
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- An order's attempts, and the index the foreign key to `orders` needs.
CREATE INDEX payments_by_order ON payments (order_id);

-- The outbox becomes a log with a position. In embedded mode the in-process
-- bus reads it by `seq` and each consumer keeps a durable cursor (the last
-- `seq` it finished, in `consumer_cursors`), so nothing marks rows published:
-- `published_at` and its `outbox_pending` index go.
--
-- Why one number is enough for a consumer's progress: every write goes
-- through the store's single writer thread, one transaction at a time, so
-- `seq` values are handed out and committed in the same order, and a reader
-- can never see `seq` n + 1 committed while n is still to come. AUTOINCREMENT
-- (rather than a plain rowid alias) makes SQLite remember the largest `seq`
-- ever used, so a number is never handed out twice, even once old rows are
-- pruned; a consumer's cursor never points at a different event than the
-- one it finished.
--
-- `id` is what consumers deduplicate by; it is a fresh UUIDv7 per row, so it
-- gets no UNIQUE index (another b-tree write per event on the purchase path
-- for a rule the code already keeps). With `seq` as the rowid, the table is
-- one b-tree plus `outbox_by_aggregate`, where it was three (the table, the
-- index behind its TEXT primary key, `outbox_pending`).
--
-- SQLite cannot change a primary key in place: the table is rebuilt the way
-- its documentation says (create, copy, drop, rename), keeping the existing
-- events in the order they were written.
CREATE TABLE outbox_log (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL,  -- UUIDv7: consumers deduplicate by it
    event_type   TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    payload      TEXT    NOT NULL,  -- a JSON object
    created_at   INTEGER NOT NULL
);

INSERT INTO outbox_log (id, event_type, aggregate_id, payload, created_at)
    SELECT id, event_type, aggregate_id, payload, created_at FROM outbox ORDER BY rowid;

DROP TABLE outbox;  -- and its index, outbox_pending

ALTER TABLE outbox_log RENAME TO outbox;

-- One aggregate's history in order (an order's events, its payments'
-- included: they carry the order's id). Order ids are UUIDv7, so the
-- purchase path's `order.created` entries append.
CREATE INDEX outbox_by_aggregate ON outbox (aggregate_id, seq);

-- Each consumer's position in the outbox: the last `seq` it finished. Only
-- ever moves forward (the store's upsert takes the larger value).
CREATE TABLE consumer_cursors (
    consumer TEXT    NOT NULL PRIMARY KEY,
    seq      INTEGER NOT NULL CHECK (seq >= 0)
);

-- Admin configuration: where to POST which events, signed with `secret`.
-- The secret is kept as given: the deliverer needs it to sign.
CREATE TABLE webhook_subscriptions (
    id          TEXT    NOT NULL PRIMARY KEY,
    url         TEXT    NOT NULL,
    event_types TEXT    NOT NULL,  -- a JSON array of event types, or ["*"]
    secret      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One event for one subscription, retried until delivered or dead.
CREATE TABLE webhook_deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,  -- UUIDv7: id order is creation order
    subscription_id TEXT    NOT NULL
                        REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_seq       INTEGER NOT NULL,  -- the event's outbox.seq
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- An event redelivered to the enqueuer is scheduled once per
    -- subscription. Leads with subscription_id, so it also serves the
    -- foreign key's cascade.
    UNIQUE (subscription_id, event_id)
);

-- What the deliverer polls: pending deliveries by when they are due. The
-- query must say `status = 'pending'` as a literal (see orders_expiring).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- A subscription's deliveries, newest first, for the admin listing.
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, id);
