//! The Lua scripts. Each runs atomically on the keys of one sale (one slot).
//! A script that fails half-way keeps the writes it made, so every script
//! checks everything before its first write. Replies are flat arrays of
//! strings: a status word first, then its details.
//!
//! No script writes to a sale's hash unless its `loaded` marker is there, so
//! a lost sale is never re-created half-empty by a late settle or release;
//! only `open` and the restore scripts create the hash.
//!
//! A sale's `state` (`running`, `paused`, `ended`) and `version` came with
//! live sale controls: a hash written before has neither, and reads as
//! running at version 0 (any version of the sale replaces its terms).
//! `remaining` may be below 0 while units withdrawn by an admin are held by
//! reservations not settled yet (the store refuses their commits); it is
//! never reported so.

use std::sync::LazyLock;

use redis::Script;

/// Decides one attempt: the key's in-flight reservation or remembered answer,
/// then the sale's state and window, the stock and the user's limit (the
/// order of `StockBook::reserve`). A refusal is remembered under the key,
/// but a pause: a retry once the sale resumes is decided afresh.
///
/// KEYS: sale hash, key record. ARGV: user, scoped key, quantity, now (ms),
/// retention (ms).
/// Replies: `flight <at:qty>` | `known <record>` | `loading` |
/// `missing <0|1 hash exists>` | `refused <slug>` | `reserved`.
pub(crate) static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale, record = KEYS[1], KEYS[2]
local user, scoped, qty, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local flight = redis.call('HGET', sale, 'r:' .. scoped)
if flight then return {'flight', flight} end
local known = redis.call('GET', record)
if known then return {'known', known} end
local s = redis.call('HMGET', sale, 'loaded', 'starts', 'ends', 'remaining', 'limit', 'h:' .. user, 'loading', 'state')
if not s[1] then
  if s[7] then return {'loading'} end
  return {'missing', tostring(redis.call('EXISTS', sale))}
end
local state = s[8] or 'running'
local refusal = nil
if state == 'ended' or now < tonumber(s[2]) or (s[3] ~= '' and now >= tonumber(s[3])) then
  refusal = 'sale-not-active'
elseif state == 'paused' then
  return {'refused', 'sale-paused'}
elseif qty > tonumber(s[4]) then
  refusal = 'sold-out'
elseif tonumber(s[6] or '0') + qty > tonumber(s[5]) then
  refusal = 'limit-exceeded'
end
if refusal then
  redis.call('SET', record, 'r:' .. ARGV[3] .. ':' .. refusal, 'PX', ARGV[5])
  return {'refused', refusal}
end
redis.call('HINCRBY', sale, 'remaining', -qty)
redis.call('HINCRBY', sale, 'h:' .. user, qty)
redis.call('HSET', sale, 'r:' .. scoped, ARGV[4] .. ':' .. ARGV[3])
return {'reserved'}
",
    )
});

/// Ends a reservation: removes it, gives its units back if asked (only if the
/// reservation is still there, so twice is once), and remembers an answer.
///
/// KEYS: sale hash, key record. ARGV: user, scoped key, give back (`1`/`0`),
/// record to remember (or empty), retention (ms).
/// Replies: `settled` | `none` (no such reservation: settled before, or the
/// sale was rebuilt) | `inconsistent <detail>` (the key is settled, the units
/// untouched).
pub(crate) static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale, record = KEYS[1], KEYS[2]
local user, field = ARGV[1], 'r:' .. ARGV[2]
local flight = redis.call('HGET', sale, field)
local reply = {'none'}
if flight then
  reply = {'settled'}
  local qty = tonumber(string.match(flight, ':(%d+)$'))
  if ARGV[3] == '1' then
    local s = redis.call('HMGET', sale, 'loaded', 'remaining', 'quantity', 'h:' .. user)
    local held = tonumber(s[4] or '0')
    if not s[1] or not qty then
      reply = {'inconsistent', 'a reservation on a sale that is not loaded'}
    elseif held < qty then
      reply = {'inconsistent', 'giving back ' .. qty .. ' units of a user who holds ' .. held}
    elseif tonumber(s[2]) + qty > tonumber(s[3]) then
      reply = {'inconsistent', 'giving back ' .. qty .. ' units would leave more than the quantity'}
    else
      if held == qty then
        redis.call('HDEL', sale, 'h:' .. user)
      else
        redis.call('HINCRBY', sale, 'h:' .. user, -qty)
      end
      redis.call('HINCRBY', sale, 'remaining', qty)
    end
  end
  redis.call('HDEL', sale, field)
end
if ARGV[4] ~= '' then
  redis.call('SET', record, ARGV[4], 'PX', ARGV[5])
end
return reply
",
    )
});

/// Returns the units of a cancelled order.
///
/// KEYS: sale hash. ARGV: user, quantity.
/// Replies: `ok` | `loading` | `missing <0|1>` | `inconsistent <detail>`.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale, user, qty = KEYS[1], ARGV[1], tonumber(ARGV[2])
local s = redis.call('HMGET', sale, 'loaded', 'remaining', 'quantity', 'h:' .. user, 'loading')
if not s[1] then
  if s[5] then return {'loading'} end
  return {'missing', tostring(redis.call('EXISTS', sale))}
end
local held = tonumber(s[4] or '0')
if held < qty then
  return {'inconsistent', 'release of ' .. qty .. ' units by a user who holds ' .. held}
end
if tonumber(s[2]) + qty > tonumber(s[3]) then
  return {'inconsistent', 'release of ' .. qty .. ' units would leave more than the quantity'}
end
if held == qty then
  redis.call('HDEL', sale, 'h:' .. user)
else
  redis.call('HINCRBY', sale, 'h:' .. user, -qty)
end
redis.call('HINCRBY', sale, 'remaining', qty)
return {'ok'}
",
    )
});

/// Opens a new sale with all its units left, unless it exists.
///
/// KEYS: sale hash. ARGV: quantity, limit, starts, ends (empty: none), may
/// create (`1`; `0` for a sale this node saw before, which must be restored
/// from the store instead), state, version.
/// Replies: `opened` | `live` | `loading` | `missing`.
pub(crate) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale = KEYS[1]
local s = redis.call('HMGET', sale, 'loaded', 'loading')
if s[1] then return 'live' end
if s[2] then return 'loading' end
if ARGV[5] ~= '1' or redis.call('EXISTS', sale) == 1 then return 'missing' end
local t = redis.call('TIME')
redis.call('HSET', sale, 'quantity', ARGV[1], 'limit', ARGV[2], 'starts', ARGV[3],
  'ends', ARGV[4], 'state', ARGV[6], 'version', ARGV[7], 'remaining', ARGV[1],
  'loaded', t[1] * 1000 + math.floor(t[2] / 1000))
return 'opened'
",
    )
});

/// Takes the terms of a newer version of a sale: a version the hash has (or
/// an older one) changes nothing. What is left moves by the change in
/// quantity, and may go below 0.
///
/// KEYS: sale hash. ARGV: version, quantity, limit, starts, ends (empty:
/// none), state.
/// Replies: `amended` | `stale` | `loading` | `missing <0|1 hash exists>` |
/// `inconsistent <detail>`.
pub(crate) static AMEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale = KEYS[1]
local s = redis.call('HMGET', sale, 'loaded', 'loading', 'version', 'quantity', 'remaining')
if not s[1] then
  if s[2] then return {'loading'} end
  return {'missing', tostring(redis.call('EXISTS', sale))}
end
if tonumber(s[3] or '0') >= tonumber(ARGV[1]) then return {'stale'} end
local old, remaining = tonumber(s[4]), tonumber(s[5])
if not old or not remaining then
  return {'inconsistent', 'a sale without its quantity or what is left'}
end
redis.call('HSET', sale, 'quantity', ARGV[2], 'limit', ARGV[3], 'starts', ARGV[4],
  'ends', ARGV[5], 'state', ARGV[6], 'version', ARGV[1])
redis.call('HINCRBY', sale, 'remaining', tonumber(ARGV[2]) - old)
return {'amended'}
",
    )
});

/// Claims a missing sale for a restore: writes its terms and a `loading`
/// token, or tells why not. A token older than the stale age (its node died
/// mid-restore) is taken over.
///
/// KEYS: sale hash. ARGV: token, stale age (ms), quantity, limit, starts, ends,
/// state, version.
/// Replies: `live` | `busy` | `claimed <token:at>`.
pub(crate) static RESTORE_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale = KEYS[1]
local s = redis.call('HMGET', sale, 'loaded', 'loading')
if s[1] then return {'live'} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if s[2] then
  local at = tonumber(string.match(s[2], ':(%d+)$'))
  if at and now - at < tonumber(ARGV[2]) then return {'busy'} end
end
local token = ARGV[1] .. ':' .. string.format('%d', now)
redis.call('DEL', sale)
redis.call('HSET', sale, 'loading', token, 'quantity', ARGV[3], 'limit', ARGV[4],
  'starts', ARGV[5], 'ends', ARGV[6], 'state', ARGV[7], 'version', ARGV[8])
return {'claimed', token}
",
    )
});

/// Writes a chunk of holdings of a sale being restored under this token.
///
/// KEYS: sale hash. ARGV: token, then user, units, user, units, …
/// Replies: 1 | 0 (the claim was lost).
pub(crate) static RESTORE_HOLDINGS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale = KEYS[1]
if redis.call('HGET', sale, 'loading') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', sale, 'h:' .. ARGV[i], ARGV[i + 1])
end
return 1
",
    )
});

/// Finishes a restore: sets what is left and the `loaded` marker.
///
/// KEYS: sale hash. ARGV: token, remaining.
/// Replies: 1 | 0 (the claim was lost).
pub(crate) static RESTORE_COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sale = KEYS[1]
if redis.call('HGET', sale, 'loading') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
redis.call('HSET', sale, 'remaining', ARGV[2], 'loaded', t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HDEL', sale, 'loading')
return 1
",
    )
});

/// Deletes a key's binding if it still names this sale.
///
/// KEYS: binding. ARGV: sale id. Replies: 1 | 0.
pub(crate) static UNBIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});
