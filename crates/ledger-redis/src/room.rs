//! [`RedisRoomBook`]: the waiting room's shared book of cluster mode
//! ([`RoomBook`]), deciding as the memory book does
//! (crates/inprocess/src/room.rs), one atomic Lua script per join or move of
//! the line, so every node issues from and admits along the same line.
//!
//! Keys, for namespace `ns` and sale `S`, both under the sale's hash tag
//! `{ns:sale:S}` (crate `keys`), so each script touches one cluster slot:
//!
//! - `{ns:sale:S}:room` — hash: `issued` (tickets issued so far), `admitted`
//!   (positions up to this one may buy), `served` (purchases of admitted
//!   holders answered, every node's) and, once drawn, `drawn` (tickets
//!   issued before the draw) and `seed` (the permutation's key).
//! - `{ns:sale:S}:room:tickets` — hash: user → ticket.
//!
//! Neither is the sale's stock hash `{ns:sale:S}` itself, so a room never
//! makes a lost sale look present to the ledger, and the ledger's scan of
//! sale hashes (keys ending in `}`) passes them by.
//!
//! The keys have no TTL: they live until [`RoomBook::forget`] deletes them
//! (the sale is over). A room holds at most its capacity of tickets.
//!
//! Lua's numbers are doubles, exact up to 2⁵³: seeds are stored and answered
//! as the decimal strings the caller passed, never computed on; counters stay
//! far below 2⁵³, and `by` and `capacity` are clamped to it here.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use stampede_app::ports::{Draw, Joined, LedgerError, RoomBook, RoomCounters};
use stampede_domain::ids::{SaleId, UserId};

use crate::keys::Namespace;

/// Amounts above this are taken as this, so the scripts' sums stay exact.
const MAX_EXACT: u64 = 1 << 53;

/// The scripts' shared start: draws if not drawn yet, with `seed` (a
/// decimal string, stored as it is), counting the tickets issued so far.
macro_rules! draw_unless_drawn {
    () => {
        r"local function draw(room, seed)
  if redis.call('HEXISTS', room, 'seed') == 0 then
    redis.call('HSET', room, 'seed', seed, 'drawn', redis.call('HGET', room, 'issued') or '0')
  end
end
"
    };
}

/// The line as replies give it, after the status word: issued, admitted,
/// served, drawn and seed (the last two empty before the draw).
macro_rules! line_reply {
    () => {
        r"local function line(room)
  local s = redis.call('HMGET', room, 'issued', 'admitted', 'served', 'drawn', 'seed')
  return {s[1] or '0', s[2] or '0', s[3] or '0', s[4] or '', s[5] or ''}
end
"
    };
}

/// Joins a user: draws first if asked (and not drawn yet), then answers the
/// user's ticket, or issues the next one unless `capacity` are issued.
///
/// KEYS: room, tickets. ARGV: user, draw seed (or empty), capacity.
/// Replies: `full` | `ticket <ticket> <issued> <admitted> <served> <drawn> <seed>`.
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        draw_unless_drawn!(),
        line_reply!(),
        r"local room, tickets, user = KEYS[1], KEYS[2], ARGV[1]
if ARGV[2] ~= '' then draw(room, ARGV[2]) end
local ticket = redis.call('HGET', tickets, user)
if not ticket then
  local issued = tonumber(redis.call('HGET', room, 'issued') or '0')
  if issued >= tonumber(ARGV[3]) then return {'full'} end
  ticket = string.format('%d', redis.call('HINCRBY', room, 'issued', 1))
  redis.call('HSET', tickets, user, ticket)
end
local reply = line(room)
table.insert(reply, 1, ticket)
table.insert(reply, 1, 'ticket')
return reply
",
    ))
});

/// Draws if not drawn yet (the first seed wins), then moves `admitted` up
/// by at most `by`, never past `issued`, and adds `served`.
///
/// KEYS: room. ARGV: seed, by, served.
/// Replies: `line <issued> <admitted> <served> <drawn> <seed>`.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        draw_unless_drawn!(),
        line_reply!(),
        r"local room = KEYS[1]
draw(room, ARGV[1])
local s = redis.call('HMGET', room, 'issued', 'admitted')
local issued, admitted = tonumber(s[1] or '0'), tonumber(s[2] or '0')
local moved = math.min(admitted + tonumber(ARGV[2]), issued)
if moved > admitted then
  redis.call('HSET', room, 'admitted', string.format('%d', moved))
end
if tonumber(ARGV[3]) > 0 then
  redis.call('HINCRBY', room, 'served', ARGV[3])
end
local reply = line(room)
table.insert(reply, 1, 'line')
return reply
",
    ))
});

/// The waiting rooms' book in Redis, shared by every node of a cluster. Its
/// own multiplexed connection, made at the first call and remade after
/// failures, so joins never queue behind purchases.
pub struct RedisRoomBook {
    con: ConnectionManager,
    ns: Namespace,
}

impl RedisRoomBook {
    /// A book on the Redis at `url` (`redis://[:password@]host:port[/db]`)
    /// with every key under `namespace` (1 to 64 of `[A-Za-z0-9._-]`; the
    /// ledger's, so a sale's room shares its slot). Does not connect yet: the
    /// first call does, so a node starts while Redis is away.
    pub fn new(url: &str, namespace: &str) -> Result<Self, LedgerError> {
        let ns = Namespace::parse(namespace)?;
        let client = redis::Client::open(url)
            .map_err(|e| LedgerError::unavailable_because("redis url is not valid", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let con = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| unavailable("connecting", e))?;
        Ok(Self { con, ns })
    }

    /// The hash of a sale's line: its counters and draw.
    pub fn room_key(&self, sale: SaleId) -> String {
        format!("{}:room", self.ns.sale(sale))
    }

    /// The hash of a sale's tickets, user → ticket.
    pub fn tickets_key(&self, sale: SaleId) -> String {
        format!("{}:room:tickets", self.ns.sale(sale))
    }
}

#[async_trait]
impl RoomBook for RedisRoomBook {
    async fn join(
        &self,
        sale: SaleId,
        user: &UserId,
        draw_seed: Option<u64>,
        capacity: u64,
    ) -> Result<Joined, LedgerError> {
        let reply: Vec<String> = JOIN
            .key(self.room_key(sale))
            .key(self.tickets_key(sale))
            .arg(user.as_str())
            .arg(draw_seed.map(|seed| seed.to_string()).unwrap_or_default())
            .arg(capacity.min(MAX_EXACT))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| unavailable("join", e))?;
        match reply.split_first() {
            Some((status, [])) if status == "full" => Ok(Joined::Full),
            Some((status, [ticket, line @ ..])) if status == "ticket" => {
                let ticket = ticket.parse().ok().filter(|&t| t > 0);
                match (ticket, parse_line(line)) {
                    (Some(ticket), Some(counters)) => Ok(Joined::Ticket(ticket, counters)),
                    _ => Err(bad_reply("join", &reply)),
                }
            }
            _ => Err(bad_reply("join", &reply)),
        }
    }

    async fn admit(
        &self,
        sale: SaleId,
        seed: u64,
        by: u64,
        served: u64,
    ) -> Result<RoomCounters, LedgerError> {
        let reply: Vec<String> = ADMIT
            .key(self.room_key(sale))
            .arg(seed.to_string())
            .arg(by.min(MAX_EXACT))
            .arg(served.min(MAX_EXACT))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| unavailable("admit", e))?;
        match reply.split_first() {
            Some((status, line)) if status == "line" => {
                parse_line(line).ok_or_else(|| bad_reply("admit", &reply))
            }
            _ => Err(bad_reply("admit", &reply)),
        }
    }

    async fn counters(&self, sale: SaleId) -> Result<RoomCounters, LedgerError> {
        let (issued, admitted, served, drawn, seed): Fields = redis::cmd("HMGET")
            .arg(self.room_key(sale))
            .arg("issued")
            .arg("admitted")
            .arg("served")
            .arg("drawn")
            .arg("seed")
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| unavailable("reading the line", e))?;
        let line = [issued, admitted, served, drawn, seed].map(Option::unwrap_or_default);
        parse_line(&line).ok_or_else(|| bad_reply("counters", &line))
    }

    async fn forget(&self, sale: SaleId) -> Result<(), LedgerError> {
        // Both keys are in the sale's slot: one DEL, Cluster-safe.
        redis::cmd("DEL")
            .arg(self.room_key(sale))
            .arg(self.tickets_key(sale))
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(|e| unavailable("forget", e))
    }
}

/// The line's fields as `HMGET` answers them (nil: not there).
type Fields = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `issued`, `admitted`, `served`, `drawn`, `seed` as the scripts answer
/// them (an empty string for a field not there): the counts default to 0,
/// and the draw is there with both of its fields or neither.
fn parse_line<S: AsRef<str>>(line: &[S]) -> Option<RoomCounters> {
    let [issued, admitted, served, drawn, seed] = line else {
        return None;
    };
    let count = |field: &S| match field.as_ref() {
        "" => Some(0),
        text => text.parse::<u64>().ok(),
    };
    let draw = match (drawn.as_ref(), seed.as_ref()) {
        ("", "") => None,
        (drawn, seed) => Some(Draw {
            count: drawn.parse().ok()?,
            seed: seed.parse().ok()?,
        }),
    };
    Some(RoomCounters {
        issued: count(issued)?,
        draw,
        admitted: count(admitted)?,
        served: count(served)?,
    })
}

fn unavailable(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    LedgerError::unavailable_because(format!("redis room book, {what}"), err)
}

fn bad_reply<S: std::fmt::Debug>(what: &str, reply: &[S]) -> LedgerError {
    LedgerError::inconsistent(format!(
        "redis room book, {what}: unexpected reply {reply:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_slot;

    #[tokio::test]
    async fn the_room_keys_are_in_the_sales_slot_and_not_sale_hashes() {
        let book = RedisRoomBook::new("redis://127.0.0.1:1", "test-1").unwrap();
        let sale = SaleId::generate();
        let hash = Namespace::parse("test-1").unwrap().sale(sale);
        for key in [book.room_key(sale), book.tickets_key(sale)] {
            assert_eq!(hash_slot(&key), hash_slot(&hash));
            assert!(key.starts_with(&hash) && key != hash);
            // The ledger takes keys ending in `}` for sale hashes.
            assert!(!key.ends_with('}'));
        }
    }

    #[test]
    fn lines_parse_as_the_scripts_answer_them() {
        assert_eq!(
            parse_line(&["", "", "", "", ""]),
            Some(RoomCounters::default())
        );
        let max = u64::MAX.to_string();
        assert_eq!(
            parse_line(&["4", "2", "5", "3", max.as_str()]),
            Some(RoomCounters {
                issued: 4,
                draw: Some(Draw {
                    count: 3,
                    seed: u64::MAX
                }),
                admitted: 2,
                served: 5,
            })
        );
        assert_eq!(parse_line(&["1", "0", "0", "", "7"]), None);
        assert_eq!(parse_line(&["x", "0", "0", "", ""]), None);
        assert_eq!(parse_line(&["1", "0", "0", ""]), None);
    }
}
