-- Each event keeps the trace of the change that wrote it (a W3C
-- `traceparent`, 55 characters), so whoever acts on the event later (the
-- payment worker, a webhook delivery) continues that trace. NULL for events
-- written before this migration, or by work that ran outside any trace.
-- Adding a nullable column rewrites no row.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
