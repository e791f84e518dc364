//! The JSON tree the change summary compares: a `spec` read once from the request body, with its
//! strings borrowed from the body and every object a sorted vector of pairs.
//!
//! Why not `serde_json::Value`: an UPDATE's diff needs both specs at once, and a `Value` object
//! is a `BTreeMap` with an owned `String` per key: a hostile body of small nested objects made
//! the review spend most of its time in malloc, free and page faults (BENCHMARKS.md, "the
//! worst review"). Here an object is one allocation, a key or a string without escapes none.
//! Equality and key order are those of a `Value` without `preserve_order` (keys sorted, the last
//! of duplicate keys wins), so the diff reads the same either way.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key, keys unique.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Reads a JSON document, borrowing from it what it can.
    pub fn parse(json: &'a str) -> Result<Node<'a>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The value of `key` when this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        let Node::Object(pairs) = self else { return None };
        pairs.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|at| &pairs[at].1)
    }

    /// Element `index` when this is an array that long.
    pub fn at(&self, index: usize) -> Option<&Node<'a>> {
        match self {
            Node::Array(items) => items.get(index),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut pairs: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            pairs.push((key, map.next_value()?));
        }
        // Kubernetes writes keys sorted, so this is usually one pass over sorted pairs. Reversed
        // first so that, the sort being stable, the last of duplicate keys is the one kept.
        if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
            pairs.reverse();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|later, kept| later.0 == kept.0);
        }
        Ok(Node::Object(pairs))
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The tree's equality is a `Value`'s: the same for every pair of documents below.
    #[test]
    fn equal_exactly_when_the_values_are() {
        let documents = [
            r#"{"a": 1, "b": [true, null, "x"]}"#,
            r#"{"b": [true, null, "x"], "a": 1}"#,
            r#"{"a": 1, "b": [true, null, "x"], "a": 2}"#,
            r#"{"a": 2, "b": [true, null, "x"]}"#,
            r#"{"a": 1.0, "b": [true, null, "x"]}"#,
            r#"{"a": 1, "b": [true, null, "\u0078"]}"#,
            r#"{"a": 1, "b": [true, null]}"#,
            r#"{"\u0061": 1, "b": [true, null, "x"]}"#,
            r#"[]"#,
            r#"{}"#,
            r#"-1"#,
        ];
        for a in documents {
            for b in documents {
                let (va, vb): (Value, Value) = (serde_json::from_str(a).unwrap(), serde_json::from_str(b).unwrap());
                let (na, nb) = (Node::parse(a).unwrap(), Node::parse(b).unwrap());
                assert_eq!(na == nb, va == vb, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn keys_are_sorted_and_the_last_duplicate_wins() {
        let node = Node::parse(r#"{"z": 1, "a": {"k": "first"}, "m": [], "a": {"k": "last"}}"#).unwrap();
        let Node::Object(pairs) = &node else { panic!("not an object: {node:?}") };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "m", "z"]);
        assert_eq!(node.get("a").and_then(|a| a.get("k")).and_then(Node::as_str), Some("last"));
        assert_eq!(node.get("m").and_then(|m| m.at(0)), None);
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let body = json!({"image": "registry/app:1", "quoted": "say \"hi\""}).to_string();
        let node = Node::parse(&body).unwrap();
        assert!(matches!(node.get("image"), Some(Node::String(Cow::Borrowed("registry/app:1")))));
        assert!(matches!(node.get("quoted"), Some(Node::String(Cow::Owned(s))) if s == "say \"hi\""));
    }

    #[test]
    fn bad_json_is_an_error() {
        for bad in ["{", r#"{"a" 1}"#, "[1,]", "nul", &"[".repeat(200)] {
            assert!(Node::parse(bad).is_err(), "{bad}");
        }
    }
}
