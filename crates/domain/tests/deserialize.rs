//! Domain values read from JSON go through their `parse`: stored or received
//! JSON cannot make a value the constructors would refuse.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use stampede_domain::ids::{OrderId, UserId};
use stampede_domain::money::Cents;
use stampede_domain::quantity::Quantity;

#[test]
fn values_out_of_bounds_do_not_deserialize() {
    assert!(serde_json::from_str::<Quantity>("0").is_err());
    assert!(serde_json::from_str::<Quantity>("-3").is_err());
    assert!(serde_json::from_str::<Quantity>("1000000001").is_err());
    assert!(serde_json::from_str::<Cents>("-1").is_err());
    assert!(serde_json::from_str::<UserId>("\"\"").is_err());
    let long = format!("\"{}\"", "u".repeat(UserId::MAX_LEN + 1));
    assert!(serde_json::from_str::<UserId>(&long).is_err());
    assert!(serde_json::from_str::<OrderId>("\"not-an-id\"").is_err());
}

#[test]
fn valid_values_round_trip_as_before() {
    let quantity: Quantity = serde_json::from_str("3").unwrap();
    assert_eq!(serde_json::to_string(&quantity).unwrap(), "3");
    let cents: Cents = serde_json::from_str("49900").unwrap();
    assert_eq!(serde_json::to_string(&cents).unwrap(), "49900");
    let user: UserId = serde_json::from_str("\"alice\"").unwrap();
    assert_eq!(serde_json::to_string(&user).unwrap(), "\"alice\"");
    let id = OrderId::generate();
    let text = serde_json::to_string(&id).unwrap();
    assert_eq!(text, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<OrderId>(&text).unwrap(), id);
}
