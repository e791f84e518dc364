//! What a decision record keeps of a change's values (`patch` writes them as a JSON Patch):
//! values only where the platform analyses them and where no secret can be, within a budget.
//!
//! Values kept (README "The decision record"): replicas, images, resources, strategy; labels and
//! label selectors; container and environment variable *names*; an HPA's bounds, target, metrics
//! and behaviour; the annotations in `KEPT_ANNOTATIONS`. Every other value (env values, `args`, `command`, probes
//! and hooks, volume sources, other annotations…) is written as `REDACTED`, its path kept: a
//! Deployment is where teams paste tokens, and a decision record goes to log sinks many read.
//!
//! A patch's paths and values share `BUDGET_BYTES`: once they would pass it, each later
//! operation keeps its path and gets `OVER_BUDGET` as its value, so that the worst change still
//! makes one log line a sink accepts (Cloud Logging takes entries up to 256 KiB) and costs a
//! bounded amount of work, however large the values it replaces.

use super::field::{Field, Step, classify};
use super::tree::Node;
use serde_json::{Map, Value};

/// A value left out because it may carry a secret.
pub const REDACTED: &str = "<redacted>";
/// A value left out because the patch's budget was spent.
pub const OVER_BUDGET: &str = "<over budget>";
/// Bytes (about, as JSON) a patch's paths and values may take.
pub const BUDGET_BYTES: usize = 64 * 1024;
/// Annotations whose values are kept: what a person sets to say why or when, never a credential.
pub const KEPT_ANNOTATIONS: [&str; 3] =
    ["kubectl.kubernetes.io/restartedAt", "kubernetes.io/change-cause", "replica-guard.io/override"];

/// One change as a patch operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The place did not exist before. `new_map`: neither did the labels or annotations map it
    /// is in (a map added whole is one change per key; the patch creates the map first).
    Add {
        value: Value,
        new_map: bool,
    },
    Replace {
        value: Value,
    },
    /// `emptied_map`: the last key of a labels or annotations map removed whole (the patch
    /// then removes the map).
    Remove {
        emptied_map: bool,
    },
}

/// What the values of a patch left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Omitted {
    /// Values written as `REDACTED`.
    pub redacted: usize,
    /// Operations whose value is `OVER_BUDGET`.
    pub over_budget: usize,
}

/// Records values while a diff is walked: keeps, redacts and counts them against the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorder {
    room: usize,
    pub omitted: Omitted,
}

impl Default for Recorder {
    fn default() -> Self {
        Self { room: BUDGET_BYTES, omitted: Omitted::default() }
    }
}

/// What an operation takes besides its path and value, at most: `{"op":"replace","path":"","value":},` and room.
const OPERATION_BYTES: usize = 40;

impl Recorder {
    /// Counts an operation's path against the budget.
    pub(super) fn path(&mut self, path: &str) {
        self.room = self.room.saturating_sub(path.len() + OPERATION_BYTES);
    }

    /// The value recorded for `node`, found at `at` below `spec`.
    pub(super) fn spec_value<'a>(&mut self, at: &mut Vec<Step<'a>>, node: &'a Node<'a>) -> Value {
        let mut redacted = 0;
        match copy(at, node, &mut self.room, &mut redacted, false) {
            Some(value) => {
                self.omitted.redacted += redacted;
                value
            }
            None => self.spent(),
        }
    }

    /// The value recorded for a label (`kept`) or an annotation of the object's own metadata.
    pub(super) fn metadata_value(&mut self, value: &str, kept: bool) -> Value {
        let (value, bytes) = if kept { (value, value.len() + 2) } else { (REDACTED, REDACTED.len() + 2) };
        if bytes > self.room {
            return self.spent();
        }
        self.room -= bytes;
        self.omitted.redacted += usize::from(!kept);
        Value::String(value.to_string())
    }

    /// The budget is spent: this value and every later one are `OVER_BUDGET`.
    fn spent(&mut self) -> Value {
        self.room = 0;
        self.omitted.over_budget += 1;
        Value::String(OVER_BUDGET.to_string())
    }
}

/// Whether an annotation's value is kept.
pub fn keeps_annotation(key: &str) -> bool {
    KEPT_ANNOTATIONS.contains(&key)
}

/// Whether the value at `at` below `spec` is kept whole.
fn keeps(at: &[Step<'_>]) -> bool {
    use Step::{Index, Key};
    if matches!(classify(at).0, Field::Replicas | Field::Image | Field::Resources | Field::Strategy) {
        return true;
    }
    match at {
        [Key("selector"), ..] | [Key("template"), Key("metadata"), Key("labels"), ..] => true,
        // An HPA's target and how it scales.
        [Key("scaleTargetRef" | "metrics" | "behavior"), ..] => true,
        [Key("template"), Key("metadata"), Key("annotations"), Key(key)] => keeps_annotation(key),
        [Key("template"), Key("spec"), Key("containers" | "initContainers"), Index(_), Key("name")] => true,
        [
            Key("template"),
            Key("spec"),
            Key("containers" | "initContainers"),
            Index(_),
            Key("env"),
            Index(_),
            Key("name"),
        ] => true,
        _ => false,
    }
}

/// Takes `bytes` of `room`; `None` when there are not that many left.
fn take(room: &mut usize, bytes: usize) -> Option<()> {
    *room = room.checked_sub(bytes)?;
    Some(())
}

/// A tree as a `Value`, every value kept and no budget (the recorded view of `patch::view`).
pub(super) fn whole(node: &Node<'_>) -> Value {
    let (mut room, mut redacted) = (usize::MAX, 0);
    copy(&mut vec![], node, &mut room, &mut redacted, true).unwrap_or(Value::Null)
}

/// `node` as recorded at `at`: kept where `keeps` says (`kept`: a place above it is, and so is
/// everything below: `keeps` holds for every path below a kept one), elsewhere its structure with
/// every scalar `REDACTED` (counted). `None` when it does not fit in `room`.
fn copy<'a>(
    at: &mut Vec<Step<'a>>,
    node: &'a Node<'a>,
    room: &mut usize,
    redacted: &mut usize,
    kept: bool,
) -> Option<Value> {
    let kept = kept || keeps(at);
    Some(match node {
        Node::Object(pairs) => {
            take(room, 2)?;
            let mut map = Map::new();
            for (key, value) in pairs {
                take(room, key.len() + 4)?;
                at.push(Step::Key(key));
                let copied = copy(at, value, room, redacted, kept);
                at.pop();
                map.insert(key.to_string(), copied?);
            }
            Value::Object(map)
        }
        Node::Array(items) => {
            take(room, 2)?;
            let mut list = Vec::with_capacity(items.len().min(64));
            for (i, item) in items.iter().enumerate() {
                take(room, 1)?;
                at.push(Step::Index(i));
                let copied = copy(at, item, room, redacted, kept);
                at.pop();
                list.push(copied?);
            }
            Value::Array(list)
        }
        _ if !kept => {
            take(room, REDACTED.len() + 2)?;
            *redacted += 1;
            Value::String(REDACTED.to_string())
        }
        Node::Null => {
            take(room, 4)?;
            Value::Null
        }
        Node::Bool(b) => {
            take(room, 5)?;
            Value::Bool(*b)
        }
        Node::Number(n) => {
            take(room, 20)?;
            Value::Number(n.clone())
        }
        Node::String(s) => {
            take(room, s.len() + 2)?;
            Value::String(s.to_string())
        }
    })
}
