//! The fields people ask about when a Deployment changes, and where in the object a change
//! is: the classification of a path below `spec` and its JSON pointer. The walk that finds the
//! changes is in `changes`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Replicas,
    Image,
    Resources,
    Env,
    Volumes,
    Strategy,
    Other,
}

impl Field {
    pub const ALL: [Field; 7] =
        [Field::Replicas, Field::Image, Field::Resources, Field::Env, Field::Volumes, Field::Strategy, Field::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Replicas => "replicas",
            Field::Image => "image",
            Field::Resources => "resources",
            Field::Env => "env",
            Field::Volumes => "volumes",
            Field::Strategy => "strategy",
            Field::Other => "other",
        }
    }
}

/// One step of a path below `spec`.
#[derive(Clone, Copy)]
pub(super) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON pointer of `at` below `/spec`.
pub(super) fn pointer(at: &[Step<'_>]) -> String {
    use std::fmt::Write;
    let mut path = String::from("/spec");
    for step in at {
        let _ = match step {
            Step::Key(key) => write!(path, "/{}", escape(key)),
            Step::Index(i) => write!(path, "/{i}"),
        };
    }
    path
}

/// The field a change below `spec` is about, and the container list and index it is in.
pub(super) fn classify(at: &[Step<'_>]) -> (Field, Option<(&'static str, usize)>) {
    use Step::{Index, Key};
    match at {
        [Key("replicas" | "maxReplicas" | "minReplicas"), ..] => (Field::Replicas, None),
        [Key("strategy" | "minReadySeconds" | "progressDeadlineSeconds"), ..] => (Field::Strategy, None),
        [Key("template"), Key("spec"), Key("volumes"), ..] => (Field::Volumes, None),
        [Key("template"), Key("spec"), Key(list @ ("containers" | "initContainers")), index, rest @ ..] => {
            let field = match rest.first() {
                Some(Key("image")) => Field::Image,
                Some(Key("resources")) => Field::Resources,
                Some(Key("env" | "envFrom")) => Field::Env,
                Some(Key("volumeMounts" | "volumeDevices")) => Field::Volumes,
                _ => Field::Other,
            };
            let list: &'static str = if *list == "containers" { "containers" } else { "initContainers" };
            (field, if let Index(i) = index { Some((list, *i)) } else { None })
        }
        _ => (Field::Other, None),
    }
}

/// A map key as a JSON pointer token.
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
