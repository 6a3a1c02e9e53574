-- Live sale controls (the same columns and rules as SQLite's migration
-- 0004): an admin pauses, resumes or ends a sale, moves its end, changes
-- its limit, adds or withdraws units. Each change writes the row one
-- `version` on, only if it is still at the version the change was made from
-- (a compare-and-set), so admins on different nodes cannot overwrite each
-- other, and every node tells a newer copy of a sale from an older one by it.
--
-- `quantity` now moves: adding units raises it and `remaining` together,
-- withdrawing lowers both, and only unsold units can go (the update's
-- `remaining + delta >= 0` guard, with the CHECK behind it). So it may
-- reach 0; no CHECK forbids that, and `remaining <= quantity` still holds
-- because both move by the same amount. Existing sales are running, at
-- version 1, as if just created.
--
-- Constant defaults rewrite no row; the CHECKs scan the table once.
ALTER TABLE sales
    ADD COLUMN state TEXT NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'paused', 'ended')),
    ADD COLUMN version BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1);
