-- Each event keeps the trace of the change that wrote it (a W3C
-- `traceparent`), so whoever acts on the event later (the payment worker, a
-- webhook delivery) continues that trace. NULL for events written before
-- this migration, or by work that ran outside any trace. A nullable column
-- without a default rewrites no row.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
