-- A sale may put its buyers through a waiting room (tickets drawn at the
-- start, then first come first served), chosen at creation and never
-- changed. Existing sales have none. A constant default rewrites no row.
ALTER TABLE sales ADD COLUMN waiting_room BOOLEAN NOT NULL DEFAULT FALSE;
