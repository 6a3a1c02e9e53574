//! The [`RoomBook`] contract: the waiting room's shared line. Each function is
//! one behaviour, given a fresh book that holds no line.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use stampede_app::ports::{Draw, Joined, RoomBook, RoomCounters};
use stampede_domain::ids::{SaleId, UserId};

/// A book under test, and what to clean up once a behaviour has run.
pub trait RoomFixture: Send + 'static {
    fn book(&self) -> Arc<dyn RoomBook>;

    /// Runs after the behaviour, whether it passed or not.
    fn teardown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

impl RoomFixture for Arc<dyn RoomBook> {
    fn book(&self) -> Arc<dyn RoomBook> {
        self.clone()
    }
}

/// Runs one behaviour on a fresh fixture (none: skipped), tears the fixture
/// down, then passes on the behaviour's failure.
pub async fn run<F, B, Fut>(fresh: impl Future<Output = Option<F>>, behaviour: B)
where
    F: RoomFixture,
    B: FnOnce(Arc<dyn RoomBook>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fresh.await else {
        return;
    };
    super::behave_then_tear_down(behaviour(fixture.book()), fixture.teardown()).await;
}

const ROOMY: u64 = 1_000;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

async fn ticket(
    book: &dyn RoomBook,
    sale: SaleId,
    who: &str,
    seed: Option<u64>,
) -> (u64, RoomCounters) {
    match book.join(sale, &user(who), seed, ROOMY).await.unwrap() {
        Joined::Ticket(ticket, counters) => (ticket, counters),
        Joined::Full => panic!("a room of {ROOMY} is not full"),
    }
}

pub async fn a_user_keeps_one_ticket_and_new_users_get_the_next_number(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    assert_eq!(ticket(&*book, sale, "ann", None).await.0, 1);
    assert_eq!(ticket(&*book, sale, "bob", None).await.0, 2);
    let (again, counters) = ticket(&*book, sale, "ann", None).await;
    assert_eq!(again, 1, "the same user keeps the same ticket");
    assert_eq!(
        counters,
        RoomCounters {
            issued: 2,
            draw: None,
            admitted: 0,
            served: 0,
        }
    );
}

pub async fn the_draw_counts_the_tickets_issued_before_it(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    for who in ["ann", "bob", "cat"] {
        ticket(&*book, sale, who, None).await;
    }
    let (dan, counters) = ticket(&*book, sale, "dan", Some(7)).await;
    assert_eq!(dan, 4, "a ticket from the start on comes after the draw");
    assert_eq!(counters.draw, Some(Draw { count: 3, seed: 7 }));
    assert_eq!(counters.issued, 4);
    // The first seed wins, whoever draws next.
    let after = book.admit(sale, 99, 0, 0).await.unwrap();
    assert_eq!(after.draw, Some(Draw { count: 3, seed: 7 }));
    let (ann, counters) = ticket(&*book, sale, "ann", Some(42)).await;
    assert_eq!((ann, counters.draw), (1, Some(Draw { count: 3, seed: 7 })));
}

pub async fn admitting_draws_first_and_never_passes_the_tickets_issued(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    for who in ["ann", "bob"] {
        ticket(&*book, sale, who, None).await;
    }
    let counters = book.admit(sale, 5, 1, 0).await.unwrap();
    assert_eq!(
        counters,
        RoomCounters {
            issued: 2,
            draw: Some(Draw { count: 2, seed: 5 }),
            admitted: 1,
            served: 0,
        }
    );
    assert_eq!(book.admit(sale, 5, 10, 0).await.unwrap().admitted, 2);
    ticket(&*book, sale, "cat", Some(5)).await;
    assert_eq!(book.admit(sale, 5, 0, 0).await.unwrap().admitted, 2);
    assert_eq!(book.admit(sale, 5, 3, 0).await.unwrap().admitted, 3);
    assert_eq!(book.counters(sale).await.unwrap().admitted, 3);
}

pub async fn a_full_room_keeps_its_tickets_and_issues_no_more(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    let full = |who: &'static str| {
        let book = book.clone();
        async move { book.join(sale, &user(who), None, 2).await.unwrap() }
    };
    assert!(matches!(full("ann").await, Joined::Ticket(1, _)));
    assert!(matches!(full("bob").await, Joined::Ticket(2, _)));
    assert_eq!(full("cat").await, Joined::Full);
    assert!(matches!(full("ann").await, Joined::Ticket(1, _)));
    assert_eq!(book.counters(sale).await.unwrap().issued, 2);
}

pub async fn the_lines_of_two_sales_are_apart(book: Arc<dyn RoomBook>) {
    let (one, two) = (SaleId::generate(), SaleId::generate());
    ticket(&*book, one, "ann", None).await;
    assert_eq!(ticket(&*book, two, "bob", None).await.0, 1);
    book.admit(one, 1, 1, 0).await.unwrap();
    assert_eq!(book.counters(two).await.unwrap().admitted, 0);
    assert_eq!(book.counters(two).await.unwrap().draw, None);
}

pub async fn a_forgotten_line_starts_again_from_nothing(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    ticket(&*book, sale, "ann", None).await;
    book.admit(sale, 1, 1, 0).await.unwrap();
    book.forget(sale).await.unwrap();
    assert_eq!(book.counters(sale).await.unwrap(), RoomCounters::default());
    assert_eq!(ticket(&*book, sale, "bob", None).await.0, 1);
}

pub async fn concurrent_joins_issue_each_number_once(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    let joins = (0..64).map(|n| {
        let book = book.clone();
        tokio::spawn(async move {
            // Every user joins twice at once: still one ticket each.
            let who = user(&format!("user-{}", n % 32));
            match book.join(sale, &who, None, ROOMY).await.unwrap() {
                Joined::Ticket(ticket, _) => (who, ticket),
                Joined::Full => panic!("not full"),
            }
        })
    });
    let mut by_user = std::collections::HashMap::new();
    for join in joins {
        let (who, ticket) = join.await.unwrap();
        let first = *by_user.entry(who).or_insert(ticket);
        assert_eq!(first, ticket, "one ticket per user");
    }
    let numbers: BTreeSet<u64> = by_user.values().copied().collect();
    assert_eq!(numbers, (1..=32).collect());
    assert_eq!(book.counters(sale).await.unwrap().issued, 32);
}

pub async fn served_purchases_add_up_across_callers(book: Arc<dyn RoomBook>) {
    let sale = SaleId::generate();
    ticket(&*book, sale, "ann", None).await;
    assert_eq!(book.admit(sale, 1, 0, 3).await.unwrap().served, 3);
    assert_eq!(book.admit(sale, 2, 1, 4).await.unwrap().served, 7);
    let counters = book.counters(sale).await.unwrap();
    assert_eq!((counters.served, counters.admitted), (7, 1));
}
