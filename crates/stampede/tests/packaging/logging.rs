//! deploy/logging/vector.yaml against the lines the binary really writes
//! (Vector itself is not installed here): the real binary serves one
//! request carrying `X-Request-Id` and `traceparent`, and every field the
//! VRL program reads from a line must be in that request's access line or
//! in a line logged inside a worker step; evaluated on those lines, the
//! ids it lifts must be the request's. Loki's labels are few-valued fields
//! the program sets, the ids go to structured metadata, and the source
//! picks exactly the compose stack's Stampede containers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{repo, yaml};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const REQUEST_ID: &str = "vector-check-0001";

/// The binary, serving; its JSON log lines arrive on `lines`.
struct Node {
    child: Child,
    lines: Receiver<Value>,
    addr: String,
    _data: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
        // Only the settings below: none from the caller's environment.
        for (name, _) in std::env::vars() {
            if name.starts_with("STAMPEDE_") || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .env("STAMPEDE_LISTEN", "127.0.0.1:0")
            .env("STAMPEDE_DATA_DIR", data.path())
            .env("STAMPEDE_LOG", "info")
            .env("STAMPEDE_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        // Drains the pipe to the end, so the node never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut node = Self {
            child,
            lines,
            addr: String::new(),
            _data: data,
        };
        let serving = node.wait_for("serving", |line| line["fields"]["message"] == "serving");
        node.addr = serving["fields"]["addr"].as_str().unwrap().to_owned();
        node
    }

    /// The first line from now on that `wanted` accepts (within 30 s).
    fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no {what} line within 30 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("the node exited"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registration with a request id and a trace context, over plain
/// HTTP/1.1; it also makes an event the workers handle in their own span.
fn register(addr: &str) {
    let body = r#"{"email":"vector-check@example.com","password":"correct horse battery"}"#;
    let request = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         X-Request-Id: {REQUEST_ID}\r\n\
         traceparent: 00-{TRACE_ID}-{PARENT_SPAN_ID}-01\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// The value at a dotted path (`fields.trace_id`), if any.
fn at<'a>(line: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(line, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

/// The VRL program of the config's one remap transform, without comments.
struct Program {
    code: Vec<String>,
}

impl Program {
    fn of(config: &Value) -> Self {
        let transforms = config["transforms"].as_object().unwrap();
        assert_eq!(transforms.len(), 1, "{transforms:?}");
        let remap = transforms.values().next().unwrap();
        assert_eq!(remap["type"], "remap");
        let code = remap["source"]
            .as_str()
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Self { code }
    }

    /// Every path read from the parsed line (`line.fields.trace_id` →
    /// `fields.trace_id`).
    fn reads(&self) -> BTreeSet<String> {
        let mut paths = BTreeSet::new();
        for code in &self.code {
            for (at, _) in code.match_indices("line.") {
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let path: String = code[at + 5..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                paths.insert(path.trim_end_matches('.').to_owned());
            }
        }
        paths
    }

    /// The event's top-level fields the program sets, with what each is
    /// set to.
    fn assignments(&self) -> BTreeMap<String, String> {
        self.code
            .iter()
            .filter_map(|code| {
                let (target, value) = code.split_once(" = ")?;
                let field = target.strip_prefix('.')?;
                let plain = !field.is_empty()
                    && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                plain.then(|| (field.to_owned(), value.trim().to_owned()))
            })
            .collect()
    }

    /// `field` on `line`, where the program sets it to paths of the line
    /// joined by `||` (VRL: the first that is neither null nor false).
    fn evaluate<'a>(&self, field: &str, line: &'a Value) -> Option<&'a Value> {
        let assignments = self.assignments();
        let value = assignments
            .get(field)
            .unwrap_or_else(|| panic!("the program does not set .{field}"));
        let paths: Vec<&str> = value
            .split("||")
            .map(|path| {
                path.trim()
                    .strip_prefix("line.")
                    .filter(|path| {
                        path.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._".contains(c))
                    })
                    .unwrap_or_else(|| panic!(".{field} = {value}: paths of the line only"))
            })
            .collect();
        paths
            .into_iter()
            .filter_map(|path| at(line, path))
            .find(|value| **value != Value::Bool(false))
    }
}

/// The `{{ field }}` a template names.
fn template_field(template: &Value) -> String {
    let text = template.as_str().unwrap().trim();
    let inner = text
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("{text}: one field per template"));
    inner.trim().to_owned()
}

fn is_hex(value: Option<&Value>, digits: usize) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|text| text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn vector_reads_fields_the_binary_writes_and_lifts_the_request_ids() {
    let config = yaml(&repo().join("deploy/logging/vector.yaml"));
    let program = Program::of(&config);
    // The line is parsed from the container's message.
    assert!(
        program
            .code
            .iter()
            .any(|code| code.starts_with("line = ")
                && code.contains("parse_json!(string!(.message))")),
        "{:?}",
        program.code
    );

    let node = Node::start();
    register(&node.addr);
    // Both, in whichever order they come: the workers may handle the
    // event before the access line is written.
    let (mut access, mut in_span) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while access.is_none() || in_span.is_none() {
        assert!(
            Instant::now() < deadline,
            "within 30 s: access line {access:?}, in-span line {in_span:?}"
        );
        let line = node.wait_for("access or in-span", |_| true);
        if line["fields"]["message"] == "answered" && line["fields"]["request_id"] == REQUEST_ID {
            access = Some(line);
        } else if at(&line, "span.trace_id").is_some() {
            in_span = Some(line);
        }
    }
    drop(node);
    let (access, in_span) = (access.unwrap(), in_span.unwrap());

    for path in program.reads() {
        assert!(
            at(&access, &path).is_some() || at(&in_span, &path).is_some(),
            "the program reads line.{path}, which the binary does not write:\n{access}\n{in_span}"
        );
    }
    // The access line: the request's own ids, its span a child of the
    // caller's.
    assert_eq!(program.evaluate("trace_id", &access).unwrap(), TRACE_ID);
    assert_eq!(program.evaluate("request_id", &access).unwrap(), REQUEST_ID);
    let span_id = program.evaluate("span_id", &access);
    assert!(is_hex(span_id, 16), "{span_id:?}");
    assert_ne!(span_id.unwrap(), PARENT_SPAN_ID);
    assert_eq!(program.evaluate("message", &access).unwrap(), "answered");
    // A line inside a worker step: that step's trace.
    assert!(
        is_hex(program.evaluate("trace_id", &in_span), 32),
        "{in_span}"
    );
    assert!(
        is_hex(program.evaluate("span_id", &in_span), 16),
        "{in_span}"
    );
}

#[test]
fn loki_gets_few_valued_labels_and_the_ids_as_structured_metadata() {
    let config = yaml(&repo().join("deploy/logging/vector.yaml"));
    let program = Program::of(&config);
    let set = program.assignments();
    let transform = config["transforms"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap();
    let loki = &config["sinks"]["loki"];
    assert_eq!(loki["type"], "loki");
    assert_eq!(loki["inputs"], serde_json::json!([transform]));
    assert_eq!(
        loki["encoding"]["codec"], "json",
        "the ids stay in the line"
    );

    let labels: BTreeSet<String> = loki["labels"]
        .as_object()
        .unwrap()
        .values()
        .map(template_field)
        .collect();
    // A label per value makes a stream per value: nothing per request.
    let few_valued = BTreeSet::from(["service", "level", "target"].map(str::to_owned));
    assert!(labels.is_subset(&few_valued), "labels from {labels:?}");
    assert!(labels.contains("service"), "{labels:?}");
    let metadata: BTreeMap<String, String> = loki["structured_metadata"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, template)| (key.clone(), template_field(template)))
        .collect();
    for id in ["trace_id", "span_id", "request_id"] {
        assert_eq!(
            metadata.get(id).map(String::as_str),
            Some(id),
            "{metadata:?}"
        );
    }
    for field in labels.iter().chain(metadata.values()) {
        assert!(set.contains_key(field), "the program does not set .{field}");
    }
}

#[test]
fn vector_picks_exactly_the_stampede_containers_of_the_compose_stack() {
    let config = yaml(&repo().join("deploy/logging/vector.yaml"));
    let sources = config["sources"].as_object().unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    let (name, source) = sources.iter().next().unwrap();
    assert_eq!(source["type"], "docker_logs");
    let transform = config["transforms"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(transform["inputs"], serde_json::json!([name]));

    let compose = yaml(&repo().join("compose.yaml"));
    let services = compose["services"].as_object().unwrap();
    let nodes: BTreeSet<&str> = services
        .iter()
        .filter(|(_, service)| service["environment"]["STAMPEDE_ROLE"].is_string())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for wanted in source["include_labels"].as_array().unwrap() {
        let (key, value) = wanted.as_str().unwrap().split_once('=').unwrap();
        let labelled: BTreeSet<&str> = services
            .iter()
            .filter(|(_, service)| service["labels"][key] == value)
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(labelled, nodes, "containers labelled {key}={value}");
    }
}
