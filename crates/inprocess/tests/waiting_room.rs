//! The waiting room (stampede_app::room) over the memory book of embedded
//! mode: the draw at the start, first come first served afterwards, tickets
//! bound to their user, and a line that moves, and says it moves, as fast as
//! purchases drain it. Time is tokio's paused clock (the pacing) and a
//! manual clock (the sale's start).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use stampede_app::AppError;
use stampede_app::ports::{Clock, ManualClock, ManualClockHandle};
use stampede_app::room::{
    DEFAULT_WINDOW, RoomSettings, Standing, TicketKey, TicketProblem, WaitingRoom,
};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;
use stampede_inprocess::MemoryRoomBook;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const START_IN_MS: i64 = 60_000;

fn room_sale(waiting_room: bool) -> Sale {
    let product = Product::create("SKU-ROOM", "Phone", 49_900, "EUR", NOW).unwrap();
    let request = SaleRequest {
        quantity: 1_000,
        starts_at: Some(NOW.plus_secs(60)),
        waiting_room,
        ..SaleRequest::default()
    };
    Sale::create(&product, &request, NOW).unwrap()
}

fn room(clock: &ManualClockHandle) -> WaitingRoom {
    let clock: Arc<dyn Clock> = clock.clone();
    WaitingRoom::new(
        Arc::new(MemoryRoomBook::new()),
        TicketKey::derive(b"secret"),
        clock,
        RoomSettings::default(),
    )
}

fn user(n: usize) -> UserId {
    UserId::parse(format!("buyer-{n}")).unwrap()
}

async fn join(room: &WaitingRoom, sale: &Sale, n: usize) -> Standing {
    room.join(sale, &user(n)).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn places_are_drawn_at_random_at_the_start_then_first_come_first_served() {
    let clock = ManualClock::new(NOW);
    let room = room(&clock);
    let sale = room_sale(true);
    let early = 1_000;
    for n in 0..early {
        let standing = join(&room, &sale, n).await;
        assert_eq!((standing.position, standing.ahead), (None, None));
        assert!(!standing.admitted);
        // Until the start: at most MAX_RETRY, never less than the minimum.
        assert_eq!(standing.retry_after, Duration::from_secs(30));
    }
    clock.advance_millis(START_IN_MS);
    room.pace(sale.id).await.unwrap();

    let mut drawn = Vec::new();
    for n in 0..early {
        drawn.push(join(&room, &sale, n).await.position.unwrap());
    }
    let mut sorted = drawn.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=early as u64).collect::<Vec<_>>(),
        "a permutation"
    );
    let kept = drawn
        .iter()
        .enumerate()
        .filter(|(n, at)| **at == *n as u64 + 1)
        .count();
    assert!(kept < 10, "{kept} of {early} kept their arrival place");
    let rising = drawn.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(
        (400..600).contains(&rising),
        "{rising} of {} neighbours in arrival order: not shuffled",
        early - 1
    );

    // After the start, everyone comes after the lottery, in arrival order.
    for n in early..early + 100 {
        let standing = join(&room, &sale, n).await;
        assert_eq!(standing.position, Some(n as u64 + 1));
    }
    // A ticket keeps its place on every ask.
    assert_eq!(join(&room, &sale, 0).await.position, Some(drawn[0]));
}

#[tokio::test(start_paused = true)]
async fn a_ticket_buys_only_for_its_user_and_only_once_its_place_is_reached() {
    let clock = ManualClock::new(NOW);
    let room = room(&clock);
    let sale = room_sale(true);
    clock.advance_millis(START_IN_MS);
    let window = DEFAULT_WINDOW as usize;
    let mut tickets = Vec::new();
    for n in 0..=window {
        tickets.push(join(&room, &sale, n).await.ticket);
    }
    let (first, last) = (&tickets[0], &tickets[window]);

    let problem = |result: Result<(), AppError>| match result {
        Err(AppError::QueueTicket(problem)) => Some(problem),
        Ok(()) => None,
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(
        problem(room.check(&sale, &user(0), None).await),
        Some(TicketProblem::Missing)
    );
    // Before the line moves, the first in line waits too.
    assert!(matches!(
        room.check(&sale, &user(0), Some(first)).await,
        Err(AppError::NotYourTurn(_))
    ));
    room.pace(sale.id).await.unwrap();
    assert_eq!(
        problem(room.check(&sale, &user(0), Some(first)).await),
        None
    );
    // The same ticket shown by anyone else, or for another sale: refused.
    assert_eq!(
        problem(room.check(&sale, &user(1), Some(first)).await),
        Some(TicketProblem::Invalid)
    );
    let other_sale = room_sale(true);
    assert_eq!(
        problem(room.check(&other_sale, &user(0), Some(first)).await),
        Some(TicketProblem::Invalid)
    );
    // One past the window waits, with its place and a wait to come back.
    match room.check(&sale, &user(window), Some(last)).await {
        Err(AppError::NotYourTurn(wait)) => {
            assert_eq!(
                (wait.position, wait.ahead),
                (Some(window as u64 + 1), Some(0))
            );
            assert!(wait.retry_after >= Duration::from_millis(250));
        }
        other => panic!("{other:?}"),
    }
    // At the sell-out the room ends: a ticket not admitted is told at once,
    // an admitted one goes on to the ledger, and no ticket is still no ticket.
    room.learn_left(sale.id, Some(0));
    assert!(matches!(
        room.check(&sale, &user(window), Some(last)).await,
        Err(AppError::Refused(stampede_domain::stock::Refusal::SoldOut))
    ));
    assert_eq!(
        problem(room.check(&sale, &user(0), Some(first)).await),
        None
    );
    assert_eq!(
        problem(room.check(&sale, &user(0), None).await),
        Some(TicketProblem::Missing)
    );
    assert!(matches!(
        room.join(&sale, &user(1)).await,
        Err(AppError::Refused(stampede_domain::stock::Refusal::SoldOut))
    ));
    // Units back: the line goes on.
    room.learn_left(sale.id, Some(3));
    assert!(matches!(
        room.check(&sale, &user(window), Some(last)).await,
        Err(AppError::NotYourTurn(_))
    ));
    // A sale without a room needs no ticket, and has no room to join.
    let plain = room_sale(false);
    assert!(room.check(&plain, &user(0), None).await.is_ok());
    assert!(matches!(
        room.join(&plain, &user(0)).await,
        Err(AppError::NoWaitingRoom)
    ));
}

/// One run of the simulated line: `rate` purchases a second served from
/// those admitted (`served` so far), for `seconds`, in 100 ms steps.
/// Returns the line's admissions a second over the run.
async fn drain(room: &WaitingRoom, sale: &Sale, rate: u64, seconds: u64, served: &mut u64) -> f64 {
    let admitted_before = admitted(room, sale).await;
    for _ in 0..seconds * 10 {
        tokio::time::advance(Duration::from_millis(100)).await;
        // Buyers come back as soon as they are admitted; the purchase path
        // answers `rate` a second.
        let waiting_to_buy = admitted(room, sale).await.saturating_sub(*served);
        for _ in 0..(rate / 10).min(waiting_to_buy) {
            room.served(sale.id);
            *served += 1;
        }
        room.pace(sale.id).await.unwrap();
    }
    (admitted(room, sale).await - admitted_before) as f64 / seconds as f64
}

/// Positions admitted so far, as any holder's answer shows it.
async fn admitted(room: &WaitingRoom, sale: &Sale) -> u64 {
    let standing = join(room, sale, LAST).await;
    standing.position.unwrap() - standing.ahead.unwrap() - 1
}

const LAST: usize = 20_000;

#[tokio::test(start_paused = true)]
async fn the_line_moves_and_says_it_moves_as_fast_as_purchases_drain_it() {
    let clock = ManualClock::new(NOW);
    let room = room(&clock);
    let sale = room_sale(true);
    clock.advance_millis(START_IN_MS);
    for n in 0..=LAST {
        room.join(&sale, &user(n)).await.unwrap();
    }
    room.pace(sale.id).await.unwrap();
    assert_eq!(admitted(&room, &sale).await, u64::from(DEFAULT_WINDOW));

    let mut served = 0;
    for (rate, tolerance) in [(400u64, 0.1), (50, 0.1), (1_500, 0.1)] {
        let moved = drain(&room, &sale, rate, 6, &mut served).await;
        // Closed loop: admissions follow purchases served.
        let off = (moved - rate as f64).abs() / rate as f64;
        assert!(
            off < 0.15,
            "admitted {moved:.0}/s while {rate}/s were served"
        );
        let standing = join(&room, &sale, LAST).await;
        let expected = (standing.ahead.unwrap() + 1) as f64 / rate as f64;
        let told = standing.retry_after.as_secs_f64().min(30.0);
        let expected = expected.clamp(0.25, 30.0);
        assert!(
            (told - expected).abs() / expected < tolerance,
            "at {rate}/s with {} ahead: told {told:.2} s, expected {expected:.2} s",
            standing.ahead.unwrap()
        );
        assert!(
            (standing.served_per_sec - rate as f64).abs() / (rate as f64) < tolerance,
            "measured {:.1}/s at {rate}/s",
            standing.served_per_sec
        );
        // With fewer units left than places ahead, the wait told is the
        // time to the sell-out.
        room.learn_left(sale.id, Some(99));
        let capped = join(&room, &sale, LAST).await.retry_after.as_secs_f64();
        let expected = (100.0 / rate as f64).clamp(0.25, 30.0);
        assert!(
            (capped - expected).abs() / expected < tolerance,
            "at {rate}/s with 99 left: told {capped:.2} s, expected {expected:.2} s"
        );
        room.learn_left(sale.id, None);
        // Never more admitted and unserved than the window.
        let outstanding = admitted(&room, &sale).await - served;
        assert!(outstanding <= u64::from(DEFAULT_WINDOW), "{outstanding}");
    }
}
