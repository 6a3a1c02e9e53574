//! Contract suites: the behaviour every adapter of a port must show, written
//! once and run against each adapter (docs/design.md §3), so embedded
//! and cluster mode cannot drift apart (docs/design.md §2).
//!
//! [`store`] holds the suite of the [`Store`](stampede_app::ports::Store) port, one
//! `pub async fn` per behaviour, each given a fresh, empty store. An adapter
//! runs all of them with [`store_contract_tests!`](crate::store_contract_tests),
//! which expands to one `#[tokio::test]` per behaviour:
//!
//! ```ignore
//! // crates/store-sqlite/tests/contract.rs
//! stampede_contract::store_contract_tests!(|dir| fresh_store(dir));
//! ```
//!
//! With `|dir|`, each test gets its own scratch directory (`dir: &Path`),
//! deleted when the test ends; without it (`store_contract_tests!(fresh())`),
//! none is made. The calling crate needs `tokio` with `macros` and
//! `rt-multi-thread`.
//!
//! [`ledger`] holds the suite of the [`StockLedger`](stampede_app::ports::StockLedger)
//! port, run with [`ledger_contract_tests!`](crate::ledger_contract_tests):
//!
//! ```ignore
//! // crates/ledger-redis/tests/contract.rs
//! stampede_contract::ledger_contract_tests!(fresh_ledger());
//! ```
//!
//! where `fresh_ledger()` is a future of `Option<impl LedgerFixture>`: `None`
//! skips the test (its fixture says why), and the fixture's teardown runs
//! after the behaviour, even when it failed.

// These are test bodies: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use tempfile::TempDir;

/// The app crate, for the macros' paths.
#[doc(hidden)]
pub use stampede_app as app;

/// Runs a behaviour on its own task, then `teardown`, then passes on the
/// behaviour's failure: a fixture is torn down even when its test fails.
pub(crate) async fn behave_then_tear_down(
    behaviour: impl std::future::Future<Output = ()> + Send + 'static,
    teardown: impl std::future::Future<Output = ()>,
) {
    let outcome = tokio::spawn(behaviour).await;
    teardown.await;
    if let Err(err) = outcome {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
        panic!("the behaviour did not finish: {err}");
    }
}

/// A scratch directory for one test, deleted when dropped.
pub fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("stampede-contract-")
        .tempdir()
        .expect("creating a scratch directory")
}

/// Expands to one `#[tokio::test]` per behaviour of the
/// [`Store`](stampede_app::ports::Store) contract ([`store`](crate::store)),
/// each on a fresh store.
///
/// `store_contract_tests!(|dir| <async expression>)`: the expression produces
/// an `Arc<dyn Store>` and may use `dir: &Path`, a scratch directory that lives
/// until the test ends. `store_contract_tests!(<async expression>)`: the same
/// without a directory.
///
/// A new behaviour in [`store`](crate::store) must also be
/// added to the list below.
#[macro_export]
macro_rules! store_contract_tests {
    (|$dir:ident| $fresh:expr) => {
        $crate::store_contract_tests!(@names [$dir] $fresh);
    };
    (@names $dir:tt $fresh:expr) => {
        $crate::store_contract_tests!(@tests $dir $fresh;
            a_product_reads_back_as_it_was_inserted,
            products_page_in_creation_order_after_the_cursor,
            a_second_product_with_the_same_sku_is_a_sku_conflict,
            a_sale_reads_back_as_it_was_inserted,
            a_sale_update_moves_quantity_and_stock_bumps_the_version_and_writes_its_event,
            an_update_from_a_stale_version_writes_nothing,
            a_withdrawal_takes_only_unsold_units,
            sale_versions_list_every_sale_with_its_version,
            a_paused_amended_or_ended_sale_reads_back_as_it_was_written,
            an_empty_batch_commits_nothing,
            a_committed_order_reads_back_and_takes_its_units_from_the_sale,
            an_order_reads_back_by_its_users_key,
            a_repeated_key_returns_the_first_order_and_takes_no_stock,
            a_key_repeated_within_one_batch_goes_to_the_first_order,
            a_batch_the_sale_covers_gives_back_the_units_of_taken_keys,
            a_repeated_key_gets_its_order_even_once_the_sale_is_sold_out,
            refused_orders_in_a_batch_leave_the_others_committed,
            an_order_for_an_unknown_sale_is_refused_as_sold_out,
            sold_units_never_exceed_the_quantity_on_sale,
            concurrent_commits_on_one_sale_never_oversell,
            an_order_is_cancelled_exactly_once_however_often_it_is_asked,
            cancelling_a_cancelled_order_leaves_it_unchanged,
            a_paid_order_is_left_unchanged_by_cancel,
            cancelling_an_unknown_order_is_not_found,
            a_users_orders_page_newest_first_with_the_cursor,
            sale_counts_follow_orders_and_cancels,
            sale_snapshots_hold_every_sale_with_holdings_that_exclude_cancelled_orders,
            keys_since_lists_the_keys_of_orders_created_from_then_on,
            a_user_reads_back_by_email,
            a_second_user_with_the_same_email_is_an_email_conflict,
            expiry_cancels_only_open_orders_whose_payment_window_has_closed,
            expiry_returns_units_exactly_once_however_often_it_runs,
            concurrent_expiry_sweeps_expire_each_order_once,
            expiry_takes_the_oldest_due_orders_first_up_to_the_limit,
            expiry_never_touches_a_paid_order,
            a_payment_request_on_an_open_order_is_recorded_with_its_event,
            a_second_payment_request_joins_the_attempt_in_flight,
            an_order_that_is_not_open_is_not_payable,
            a_payment_request_for_an_unknown_order_is_not_found,
            a_submitted_payment_keeps_the_first_provider_reference,
            approval_pays_an_open_order_once,
            approval_after_a_cancel_flags_a_refund_and_leaves_the_order_cancelled,
            approval_after_expiry_flags_a_refund_and_leaves_the_order_cancelled,
            a_declined_or_failed_payment_leaves_the_order_open_and_payable_again,
            settling_an_unknown_payment_is_not_found,
            payments_still_requested_are_listed_oldest_first_until_answered,
            cancel_and_approval_raced_from_many_tasks_leave_each_order_paid_or_cancelled,
            an_empty_outbox_starts_at_zero,
            events_after_pages_through_the_outbox_in_seq_order,
            every_change_writes_exactly_one_event_of_its_type,
            an_orders_events_hold_its_history_including_its_payments,
            events_keep_the_trace_of_the_write_that_made_them,
            consumer_cursors_start_at_zero_and_never_move_backwards,
            a_webhook_subscription_reads_back_as_it_was_inserted,
            a_webhook_secret_is_replaced_only_while_it_is_still_the_old_one,
            enqueueing_an_event_twice_schedules_one_delivery_per_subscription,
            due_deliveries_are_leased_to_one_claim_at_a_time,
            concurrent_claims_take_each_due_delivery_once,
            a_failed_attempt_is_retried_later_and_a_postponed_one_keeps_its_attempts,
            a_dead_delivery_is_never_due_again,
            deleting_a_subscription_removes_its_deliveries,
            deliveries_filter_by_status_and_page_newest_first,
            an_open_store_answers_pings,
            a_closed_store_answers_unavailable,
        );
    };
    (@tests [$dir:ident] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // Lives until the test ends, after the store is dropped.
                let scratch = $crate::scratch_dir();
                let $dir: &::std::path::Path = scratch.path();
                let store: ::std::sync::Arc<dyn $crate::app::ports::Store> = $fresh.await;
                $crate::store::$name(store).await;
            }
        )*
    };
    (@tests [] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::app::ports::Store> = $fresh.await;
                $crate::store::$name(store).await;
            }
        )*
    };
    ($fresh:expr) => {
        $crate::store_contract_tests!(@names [] $fresh);
    };
}

/// Expands to one `#[tokio::test]` per behaviour of the
/// [`StockLedger`](stampede_app::ports::StockLedger) contract
/// ([`ledger`](crate::ledger)), each on a fresh ledger.
///
/// `ledger_contract_tests!(<async expression>)`: the expression produces an
/// `Option<F>` where `F:` [`LedgerFixture`](crate::ledger::LedgerFixture)
/// (`Arc<dyn StockLedger>` is one); `None` skips the test.
///
/// A new behaviour in [`ledger`](crate::ledger) must also
/// be added to the list below.
#[macro_export]
macro_rules! ledger_contract_tests {
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::ledger::run($fresh, $crate::ledger::$name).await;
            }
        )*
    };
    ($fresh:expr) => {
        $crate::ledger_contract_tests!(@tests $fresh;
            a_won_reservation_replays_its_order_to_the_same_key,
            a_repeat_of_a_key_in_flight_waits_until_it_is_settled,
            a_key_sent_with_another_quantity_is_a_mismatch,
            a_key_used_on_one_sale_is_a_mismatch_on_another,
            keys_are_scoped_to_their_user,
            a_sold_out_refusal_is_remembered_under_the_key,
            a_purchase_past_the_per_user_limit_is_refused_and_remembered,
            a_sale_not_started_is_not_active_and_the_refusal_is_remembered,
            an_ended_sale_is_not_active,
            an_abandoned_reservation_gives_its_units_back_and_forgets_the_key,
            a_replaced_reservation_gives_its_units_back_and_remembers_the_stores_answer,
            a_replaced_answer_from_another_sale_binds_the_key_to_that_sale,
            released_units_come_back_once_and_an_over_release_is_inconsistent,
            remaining_counts_the_units_purchases_can_still_take,
            opening_a_sale_twice_changes_nothing,
            restore_rebuilds_sales_and_winning_keys_exactly,
            restoring_twice_does_not_count_twice,
            a_snapshot_whose_numbers_disagree_is_inconsistent,
            concurrent_decides_never_oversell_or_pass_the_per_user_limit,
            a_key_raced_from_many_tasks_reserves_once,
            an_unknown_sale_is_unknown_and_binds_no_key,
            units_added_to_a_sale_are_for_sale_at_once,
            units_withdrawn_are_never_sold_even_while_reservations_hold_them,
            a_new_per_user_limit_applies_to_the_next_purchase,
            a_new_end_applies_to_the_next_purchase,
            a_paused_sale_refuses_without_remembering_the_key,
            a_paused_sale_that_is_sold_out_answers_paused,
            a_sale_ended_by_an_admin_is_not_active_and_the_refusal_is_remembered,
            an_older_or_the_same_version_of_a_sale_changes_nothing,
            versions_applied_at_once_in_any_order_count_once,
            amending_a_sale_the_ledger_does_not_track_changes_nothing,
            a_restored_sale_keeps_its_state_and_version,
        );
    };
}

/// Expands to one `#[tokio::test]` per behaviour of the
/// [`RoomBook`](stampede_app::ports::RoomBook) contract ([`room`](crate::room)),
/// each on a fresh book; `room_contract_tests!(<async expression>)` as for
/// [`ledger_contract_tests!`](crate::ledger_contract_tests).
#[macro_export]
macro_rules! room_contract_tests {
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::room::run($fresh, $crate::room::$name).await;
            }
        )*
    };
    ($fresh:expr) => {
        $crate::room_contract_tests!(@tests $fresh;
            a_user_keeps_one_ticket_and_new_users_get_the_next_number,
            the_draw_counts_the_tickets_issued_before_it,
            admitting_draws_first_and_never_passes_the_tickets_issued,
            a_full_room_keeps_its_tickets_and_issues_no_more,
            the_lines_of_two_sales_are_apart,
            a_forgotten_line_starts_again_from_nothing,
            concurrent_joins_issue_each_number_once,
            served_purchases_add_up_across_callers,
        );
    };
}

pub mod bus;
pub mod faults;
pub mod jobs;
pub mod ledger;
pub mod room;
pub mod servers;
pub mod store;
