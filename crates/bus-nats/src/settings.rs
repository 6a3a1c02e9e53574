//! What the JetStream bus needs to know, with defaults that suit one NATS
//! server; and the names it derives from the namespace.

use std::time::Duration;

use stampede_app::ports::BusError;

/// Settings of the JetStream bus and its outbox relay.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// Server address(es), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Prefix of every stream, consumer, subject and store cursor this bus
    /// uses, so several deployments (or tests) can share one NATS server.
    /// Letters, digits, `-` and `_` only.
    pub namespace: String,
    /// Replicas of the stream: 1 on one server, 3 in production (docs/design.md
    /// §5). Applied when the stream is created.
    pub replicas: usize,
    /// How long the stream keeps events. The store is the record; this only
    /// bounds how far behind a consumer may fall and still read from the bus.
    pub max_age: Duration,
    /// Most events one `next` hands out, whatever the caller asks.
    pub fetch_batch: u32,
    /// Publishes the relay keeps awaiting their acknowledgement at once.
    pub max_in_flight: usize,
    /// How long a delivered, unacknowledged event waits before JetStream
    /// delivers it again (a worker that died mid-batch).
    pub ack_wait: Duration,
    /// How often an idle relay looks at the outbox without a wake-up.
    pub poll: Duration,
    /// Durable consumers whose stored positions bound how far back the relay
    /// republishes when the stream is lost. Names subscribed through this
    /// bus are added on their own; list here every consumer of the cluster.
    pub consumers: Vec<String>,
    /// Bound on connecting, on JetStream API calls and on publish
    /// acknowledgements.
    pub timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            namespace: "stampede".to_owned(),
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            fetch_batch: 256,
            max_in_flight: 256,
            ack_wait: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            consumers: vec!["payments".to_owned(), "webhooks".to_owned()],
            timeout: Duration::from_secs(5),
        }
    }
}

impl NatsSettings {
    /// Checks what the server would refuse later, naming the setting.
    pub(crate) fn validate(&self) -> Result<(), BusError> {
        let invalid = |what: String| Err(BusError::unavailable(format!("invalid nats {what}")));
        if !is_token(&self.namespace) {
            return invalid(format!(
                "namespace {:?}: use letters, digits, '-' and '_'",
                self.namespace
            ));
        }
        if let Some(name) = self.consumers.iter().find(|name| !is_token(name)) {
            return invalid(format!(
                "consumer name {name:?}: use letters, digits, '-' and '_'"
            ));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return invalid(format!("replicas {}: between 1 and 5", self.replicas));
        }
        if self.fetch_batch == 0 || self.max_in_flight == 0 {
            return invalid("fetch_batch and max_in_flight: at least 1".to_owned());
        }
        // JetStream's duplicate window (2 minutes by default) must fit.
        if self.max_age < Duration::from_secs(120) {
            return invalid("max_age: at least 2 minutes".to_owned());
        }
        Ok(())
    }
}

/// A name JetStream accepts as a stream or consumer name and as one subject
/// token.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The names derived from a namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub namespace: String,
}

impl Names {
    pub fn stream(&self) -> String {
        format!("{}-events", self.namespace)
    }

    /// Every event subject: `<namespace>.events.<event_type>`.
    pub fn subjects(&self) -> String {
        format!("{}.events.>", self.namespace)
    }

    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.events.{}", self.namespace, subject_tokens(event_type))
    }

    /// Core NATS subject on which `notify` wakes the relays of every node.
    pub fn wake_subject(&self) -> String {
        format!("{}.relay.wake", self.namespace)
    }

    /// JetStream durable name of a consumer.
    pub fn durable(&self, consumer: &str) -> String {
        format!("{}-{consumer}", self.namespace)
    }

    /// The store cursor recording a consumer's handled position, for
    /// republishing after a loss of the stream. A `.` cannot appear in a
    /// namespace or a consumer name, so these never collide.
    pub fn consumer_cursor(&self, consumer: &str) -> String {
        format!("nats.{}.{consumer}", self.namespace)
    }

    /// The job queue's stream, `<namespace>-jobs`.
    pub fn jobs_stream(&self) -> String {
        format!("{}-jobs", self.namespace)
    }

    /// Every job subject: `<namespace>.jobs.<kind>`.
    pub fn jobs_subjects(&self) -> String {
        format!("{}.jobs.>", self.namespace)
    }

    pub fn jobs_subject(&self, kind: &str) -> String {
        format!("{}.jobs.{}", self.namespace, subject_tokens(kind))
    }

    /// The store cursor of the relay: the last event JetStream acknowledged.
    pub fn relay_cursor(&self) -> String {
        format!("nats.{}.relay", self.namespace)
    }
}

/// An event type as subject tokens: `order.paid` stays as it is; characters a
/// subject cannot hold become `_`, so an odd type still publishes.
fn subject_tokens(event_type: &str) -> String {
    let tokens: Vec<String> = event_type
        .split('.')
        .map(|token| {
            let cleaned: String = token
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '*' && c != '>' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if cleaned.is_empty() {
                "_".to_owned()
            } else {
                cleaned
            }
        })
        .collect();
    tokens.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_become_valid_subject_tokens() {
        let names = Names {
            namespace: "t1".to_owned(),
        };
        assert_eq!(names.subject("order.paid"), "t1.events.order.paid");
        assert_eq!(names.subject("a..b c>"), "t1.events.a._.b_c_");
    }

    #[test]
    fn a_namespace_with_a_dot_is_refused() {
        let settings = NatsSettings {
            namespace: "a.b".to_owned(),
            ..NatsSettings::default()
        };
        assert!(settings.validate().is_err());
        assert!(NatsSettings::default().validate().is_ok());
    }
}
