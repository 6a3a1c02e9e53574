//! The edge's settings as configuration, with their defaults: the body limit,
//! rate limits, deadlines and the adaptive limit on requests in flight. Field
//! names are the settings' names; [`HttpConfig::settings`] builds the
//! [`HttpSettings`] the router runs on.

use std::fmt;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stampede_flow::adaptive::AdaptiveConfig;
use stampede_flow::serde_duration::millis;

use crate::account_limits::AccountLimitSettings;
use crate::client_ip::TrustedProxies;
use crate::limits::{RateLimitRule, validate_rules};
use crate::protect::ProtectSettings;
use crate::state::{ConnectionSettings, HttpSettings};

/// The adaptive limit's starting point, within its bounds.
const INITIAL_IN_FLIGHT: u32 = 512;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// `default`, `off`, or the rules themselves (`[[rate_limits]]`).
    pub rate_limits: LimitRules,
    /// The built-in rule: purchase attempts per user per second.
    pub purchases_per_user_per_sec: u32,
    /// Built-in: failed logins per client address per minute; 0: no limit.
    pub login_failures_per_min: u32,
    /// Built-in: registrations per client address per hour; 0: no limit.
    pub registrations_per_hour: u32,
    /// Comma-separated addresses or CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<String>,
    #[serde(rename = "rate_limit_timeout_ms", with = "millis")]
    pub rate_limit_timeout: Duration,
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    #[serde(rename = "max_request_timeout_ms", with = "millis")]
    pub max_request_timeout: Duration,
    /// Upper bound of the adaptive limit; 0 turns it off.
    pub max_in_flight: u32,
    pub min_in_flight: u32,
    #[serde(rename = "in_flight_latency_target_ms", with = "millis")]
    pub in_flight_latency_target: Duration,
    /// Open order event streams per node at most (and 8 per user).
    pub max_event_streams: usize,
    #[serde(rename = "header_timeout_ms", with = "millis")]
    pub header_timeout: Duration,
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            rate_limits: LimitRules::Default,
            purchases_per_user_per_sec: 20,
            login_failures_per_min: 10,
            registrations_per_hour: 20,
            trusted_proxies: None,
            rate_limit_timeout: Duration::from_millis(50),
            request_timeout: Duration::from_secs(10),
            max_request_timeout: Duration::from_secs(60),
            max_in_flight: 4096,
            min_in_flight: 32,
            in_flight_latency_target: Duration::from_millis(250),
            max_event_streams: 2048,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// A setting [`HttpConfig::settings`] refused: its field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

impl HttpConfig {
    /// The settings the router runs on; `serve_api`: see [`HttpSettings`].
    /// Bounds of single values are the caller's to check first.
    pub fn settings(&self, serve_api: bool) -> Result<HttpSettings, Refused> {
        let refused = |field, message: String| Refused { field, message };
        let rate_limits = match &self.rate_limits {
            LimitRules::Default => RateLimitRule::defaults(self.purchases_per_user_per_sec),
            LimitRules::Off => Vec::new(),
            LimitRules::Rules(rules) => rules.clone(),
        };
        // A shared rule without a store is the caller's to refuse: it knows
        // the setting that makes one.
        validate_rules(&rate_limits, Some(crate::route_templates()), true)
            .map_err(|err| refused("rate_limits", err.message))?;
        let trusted_proxies = match &self.trusted_proxies {
            Some(list) => TrustedProxies::parse_list(list).map_err(|bad| {
                refused(
                    "trusted_proxies",
                    format!("`{bad}` is not an address or CIDR"),
                )
            })?,
            None => TrustedProxies::default(),
        };
        let adaptive = if self.max_in_flight == 0 {
            None
        } else {
            if self.min_in_flight == 0 || self.min_in_flight > self.max_in_flight {
                return Err(refused(
                    "min_in_flight",
                    format!(
                        "must be from 1 to {}, got {}",
                        self.max_in_flight, self.min_in_flight
                    ),
                ));
            }
            let config = AdaptiveConfig {
                initial: INITIAL_IN_FLIGHT.clamp(self.min_in_flight, self.max_in_flight),
                min: self.min_in_flight,
                max: self.max_in_flight,
                latency_target: self.in_flight_latency_target,
                ..AdaptiveConfig::default()
            };
            config
                .validate()
                .map_err(|err| refused("max_in_flight", err.to_string()))?;
            Some(config)
        };
        Ok(HttpSettings {
            max_body_bytes: self.max_body_bytes,
            protect: ProtectSettings {
                rate_limits,
                accounts: AccountLimitSettings {
                    login_failures_per_min: self.login_failures_per_min,
                    registrations_per_hour: self.registrations_per_hour,
                },
                trusted_proxies,
                adaptive,
                request_timeout: self.request_timeout,
                max_request_timeout: self.max_request_timeout,
                shared_timeout: self.rate_limit_timeout,
            },
            serve_api,
            max_event_streams: self.max_event_streams,
            connections: ConnectionSettings {
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections,
            },
        })
    }
}

/// The rate-limit rules: `default` (the built-in per-user purchase rule),
/// `off` (none), or a list of rules (`[[rate_limits]]` in the file).
#[derive(Debug, Clone, Default)]
pub enum LimitRules {
    #[default]
    Default,
    Off,
    Rules(Vec<RateLimitRule>),
}

impl Serialize for LimitRules {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Default => serializer.serialize_str("default"),
            Self::Off => serializer.serialize_str("off"),
            Self::Rules(rules) => rules.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for LimitRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rules;
        impl<'de> Visitor<'de> for Rules {
            type Value = LimitRules;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`default`, `off` or a list of rules")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<LimitRules, E> {
                match value {
                    "default" => Ok(LimitRules::Default),
                    "off" => Ok(LimitRules::Off),
                    _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LimitRules, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element()? {
                    rules.push(rule);
                }
                Ok(LimitRules::Rules(rules))
            }
        }
        deserializer.deserialize_any(Rules)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_defaults_build_the_edge_a_node_runs() {
        let settings = HttpConfig::default().settings(true).unwrap();
        assert_eq!(settings.max_body_bytes, 1024 * 1024);
        let adaptive = settings.protect.adaptive.unwrap();
        assert_eq!(
            (adaptive.initial, adaptive.min, adaptive.max),
            (512, 32, 4096)
        );
        assert_eq!(settings.protect.rate_limits.len(), 1);
        let off = HttpConfig {
            max_in_flight: 0,
            rate_limits: LimitRules::Off,
            ..HttpConfig::default()
        };
        let settings = off.settings(true).unwrap();
        assert!(settings.protect.adaptive.is_none() && settings.protect.rate_limits.is_empty());
        let inverted = HttpConfig {
            min_in_flight: 5000,
            ..HttpConfig::default()
        };
        assert_eq!(inverted.settings(true).unwrap_err().field, "min_in_flight");
    }

    #[test]
    fn rules_are_default_off_or_a_list() {
        let rules = |value| serde_json::from_value::<LimitRules>(value);
        assert!(matches!(rules(json!("off")), Ok(LimitRules::Off)));
        assert!(matches!(rules(json!("default")), Ok(LimitRules::Default)));
        let list = rules(json!([{"name": "a", "key": "ip", "limit": 1}])).unwrap();
        assert!(matches!(list, LimitRules::Rules(ref r) if r.len() == 1));
        assert!(rules(json!("on")).is_err());
        assert!(rules(json!([{"name": "a", "key": "ip", "lmit": 1}])).is_err());
        assert_eq!(
            serde_json::to_value(LimitRules::Default).unwrap(),
            json!("default")
        );
    }
}
