//! The rate-limit rules in force, replaced whole while serving
//! (docs/design.md §8.1): from `PUT /api/v1/admin/rate-limits`, from the
//! configuration file again on `SIGHUP`, or from the cluster.
//!
//! Requests read the compiled set through an [`ArcSwap`]: a load costs no
//! lock and no write to a shared counter, and a replacement never waits for
//! requests. A replacement is checked first by [`validate_rules`] (refused
//! whole, the old set staying), then compiled keeping every unchanged rule
//! with its state ([`RateLimits::replaced_by`]).
//!
//! In cluster mode the set lives in the shared store too, with a version:
//! a replacement is stored first (refused if it cannot be, so nodes never
//! disagree for long), and each node polls the version every 500 ms and
//! adopts a set it has not seen ([`LiveRules::follow`]). A node starting
//! adopts the stored set, which wins over its own file: the last
//! replacement, by API or `SIGHUP` on any node, is the cluster's until the
//! next one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use metrics::{Counter, counter};
use stampede_flow::limit::shared::{RateStore, RateStoreError, SharedStore};

use crate::limits::{self, RateLimitRule, RateLimits, RuleError, validate_rules};

/// Where a replacement came from: the `source` label of
/// `stampede_rate_limit_rule_changes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `PUT /api/v1/admin/rate-limits`.
    Api,
    /// The configuration file, read again on `SIGHUP`.
    Sighup,
    /// Another node's replacement, read from the shared store.
    Cluster,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Sighup => "sighup",
            Self::Cluster => "cluster",
        }
    }
}

/// Why a replacement did not happen; the old set stays in force.
#[derive(Debug)]
pub enum ReplaceError {
    /// The set is refused, naming the rule and field.
    Invalid(RuleError),
    /// Cluster mode: the set could not be stored for the other nodes.
    Unavailable(RateStoreError),
}

/// The longest a replacement waits for the shared store.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The rules in force, and how to replace them.
pub struct LiveRules {
    current: ArcSwap<RateLimits>,
    /// Where shared rules keep their state, for the rules compiled later.
    shared: Option<SharedStore>,
    /// Cluster mode: where the set every node runs is kept.
    cluster: Option<Arc<dyn RateStore>>,
    /// Every route template of the API (whatever this node's role serves),
    /// which rules may name; set once the router is built.
    routes: OnceLock<&'static [&'static str]>,
    /// Serialises replacements; holds the version of the stored set this
    /// node last adopted or stored (0: none).
    replacing: tokio::sync::Mutex<u64>,
    changes: [Counter; 3],
}

impl LiveRules {
    /// `rules` (checked already) in force; `store`, in cluster mode, keeps
    /// shared rules' state and the cluster's set, each call bounded by
    /// `shared_timeout` on the request path.
    pub fn new(
        rules: &[RateLimitRule],
        store: Option<Arc<dyn RateStore>>,
        shared_timeout: Duration,
    ) -> Self {
        let shared = limits::shared_store(store.clone(), shared_timeout);
        let change = |source: Source| counter!("stampede_rate_limit_rule_changes_total", "source" => source.as_str());
        Self {
            current: ArcSwap::from_pointee(RateLimits::with_store(rules, shared.clone())),
            shared,
            cluster: store,
            routes: OnceLock::new(),
            replacing: tokio::sync::Mutex::new(0),
            changes: [Source::Api, Source::Sighup, Source::Cluster].map(change),
        }
    }

    /// The compiled rules in force, for one request.
    pub fn current(&self) -> Guard<Arc<RateLimits>> {
        self.current.load()
    }

    /// The rules in force, as written.
    pub fn rules(&self) -> Vec<RateLimitRule> {
        self.current.load().rules().to_vec()
    }

    /// The route templates rules may name, checked from now on.
    pub fn know_routes(&self, routes: &'static [&'static str]) {
        let _ = self.routes.set(routes);
    }

    /// Checks `rules` as a replacement on this node.
    pub fn validate(&self, rules: &[RateLimitRule]) -> Result<(), RuleError> {
        validate_rules(rules, self.routes.get().copied(), self.shared.is_some())
    }

    /// Replaces the rules in force by `rules`, whole, or refuses them and
    /// keeps the old ones. In cluster mode the set is stored for every node
    /// first. Returns the rules now in force.
    pub async fn replace(
        &self,
        rules: Vec<RateLimitRule>,
        source: Source,
    ) -> Result<Vec<RateLimitRule>, ReplaceError> {
        self.validate(&rules).map_err(ReplaceError::Invalid)?;
        let mut seen = self.replacing.lock().await;
        if let Some(store) = &self.cluster {
            let text = serde_json::to_string(&rules)
                .map_err(|e| ReplaceError::Unavailable(RateStoreError(e.to_string())))?;
            *seen = tokio::time::timeout(STORE_TIMEOUT, store.store_rules(&text))
                .await
                .map_err(|_| {
                    RateStoreError(format!("no answer within {}s", STORE_TIMEOUT.as_secs()))
                })
                .and_then(|stored| stored)
                .map_err(ReplaceError::Unavailable)?;
        }
        self.swap(&rules, source, *seen);
        Ok(rules)
    }

    /// Cluster mode: adopts the stored set when its version is not the one
    /// this node last saw (one cheap read when it is). A stored set this
    /// node cannot run is logged and skipped, the old rules staying.
    pub async fn follow(&self) -> Result<(), RateStoreError> {
        let Some(store) = &self.cluster else {
            return Ok(());
        };
        let version = store.rules_version().await?;
        let mut seen = self.replacing.lock().await;
        if version == *seen {
            return Ok(());
        }
        let Some(stored) = store.load_rules().await? else {
            // Gone (Redis emptied): what runs stays until the next set.
            *seen = 0;
            return Ok(());
        };
        *seen = stored.version;
        let rules = serde_json::from_str::<Vec<RateLimitRule>>(&stored.text)
            .map_err(|e| e.to_string())
            .and_then(|rules| match self.validate(&rules) {
                Ok(()) => Ok(rules),
                Err(err) => Err(format!("{}: {err}", err.path())),
            });
        match rules {
            Ok(rules) if rules.as_slice() != self.current.load().rules() => {
                self.swap(&rules, Source::Cluster, stored.version);
            }
            Ok(_) => {}
            Err(reason) => tracing::warn!(
                version = stored.version,
                %reason,
                "the cluster's rate limit rules cannot run on this node: the old rules stay"
            ),
        }
        Ok(())
    }

    fn swap(&self, rules: &[RateLimitRule], source: Source, version: u64) {
        let old = self.current.load();
        self.current
            .store(Arc::new(old.replaced_by(rules, self.shared.clone())));
        self.changes[source as usize].increment(1);
        let names: Vec<&str> = rules.iter().map(|rule| rule.name.as_str()).collect();
        tracing::info!(
            source = source.as_str(),
            count = rules.len(),
            names = %names.join(", "),
            version,
            "rate limit rules replaced"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use stampede_flow::limit::shared::StoredRules;
    use stampede_flow::{Algorithm, LimitDecision, Quota};

    use super::*;
    use crate::limits::KeyKind;

    /// A store of rule sets in memory; checks are never asked.
    #[derive(Default)]
    struct Sets(Mutex<Option<StoredRules>>);

    #[async_trait]
    impl RateStore for Sets {
        async fn check(
            &self,
            _: &str,
            _: &str,
            _: Algorithm,
            _: Quota,
        ) -> Result<LimitDecision, RateStoreError> {
            Err(RateStoreError("not here".into()))
        }

        async fn rules_version(&self) -> Result<u64, RateStoreError> {
            Ok(self.0.lock().unwrap().as_ref().map_or(0, |s| s.version))
        }

        async fn load_rules(&self) -> Result<Option<StoredRules>, RateStoreError> {
            Ok(self.0.lock().unwrap().clone())
        }

        async fn store_rules(&self, text: &str) -> Result<u64, RateStoreError> {
            let mut set = self.0.lock().unwrap();
            let version = set.as_ref().map_or(0, |s| s.version) + 1;
            *set = Some(StoredRules {
                version,
                text: text.to_owned(),
            });
            Ok(version)
        }
    }

    fn rule(name: &str, limit: u32) -> RateLimitRule {
        RateLimitRule {
            name: name.into(),
            key: KeyKind::Global,
            limit,
            ..RateLimitRule::defaults(1).remove(0)
        }
    }

    #[tokio::test]
    async fn a_bad_set_is_refused_whole_and_the_old_one_stays() {
        let live = LiveRules::new(&[rule("a", 5)], None, Duration::from_millis(50));
        let Err(ReplaceError::Invalid(err)) = live
            .replace(vec![rule("b", 1), rule("c", 0)], Source::Api)
            .await
        else {
            panic!("accepted");
        };
        assert_eq!(err.path(), "rules[1].limit");
        assert_eq!(live.rules(), vec![rule("a", 5)]);
        live.replace(vec![rule("b", 1)], Source::Api).await.unwrap();
        assert_eq!(live.current().rules(), [rule("b", 1)]);
    }

    #[tokio::test]
    async fn a_set_stored_by_one_node_is_followed_by_the_others() {
        let store: Arc<Sets> = Arc::default();
        let node = || {
            let store: Arc<dyn RateStore> = store.clone();
            let mut local = rule("a", 5);
            local.backend = Some(limits::BackendName::Local);
            LiveRules::new(&[local], Some(store), Duration::from_millis(50))
        };
        let (a, b) = (node(), node());
        let replacement = vec![rule("b", 3)];
        a.replace(replacement.clone(), Source::Api).await.unwrap();
        assert_eq!(a.rules(), replacement);
        assert_ne!(b.rules(), replacement);
        b.follow().await.unwrap();
        assert_eq!(b.rules(), replacement);
        // A stored set this node cannot run changes nothing.
        store
            .store_rules(r#"[{"name": "x", "key": "ip", "limit": 0}]"#)
            .await
            .unwrap();
        a.follow().await.unwrap();
        assert_eq!(a.rules(), replacement);
        // Nor does a set gone from the store (Redis emptied).
        store.0.lock().unwrap().take();
        assert!(a.follow().await.is_ok());
        assert_eq!(a.rules(), replacement);
    }
}
