//! The responses `/v1/responses` keeps for `previous_response_id` and `GET`: the last
//! [`STORE_COUNT`], at most [`STORE_BYTES`] of their chats, oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// The most responses kept, and the most bytes of their chats: past either, the oldest go.
pub(crate) const STORE_COUNT: usize = 1024;
const STORE_BYTES: usize = 64 << 20;

/// Kept responses, oldest first.
#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    order: VecDeque<String>,
    entries: HashMap<String, Arc<Stored>>,
    bytes: usize,
}

/// A kept response (its body, as `GET /v1/responses/{id}` serves it; none for `/api/v1/chat`'s,
/// which are kept for `previous_response_id` only) and the chat it ends (its output included; the
/// instructions, which do not carry over, left out).
pub(crate) struct Stored {
    pub messages: Vec<lmstudio::ChatMessage>,
    pub body: Option<serde_json::Value>,
    bytes: usize,
}

impl Store {
    pub(crate) fn put(&self, id: String, body: Option<serde_json::Value>, messages: Vec<lmstudio::ChatMessage>) {
        let bytes = messages
            .iter()
            .map(|m| m.content.len() + m.tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>())
            .sum();
        let mut kept = lock(&self.inner);
        kept.bytes += bytes;
        kept.order.push_back(id.clone());
        if let Some(replaced) = kept.entries.insert(id, Arc::new(Stored { messages, body, bytes })) {
            kept.bytes -= replaced.bytes;
        }
        while kept.order.len() > STORE_COUNT || kept.bytes > STORE_BYTES {
            let Some(oldest) = kept.order.pop_front() else { break };
            if let Some(gone) = kept.entries.remove(&oldest) {
                kept.bytes -= gone.bytes;
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Stored>> {
        lock(&self.inner).entries.get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut kept = lock(&self.inner);
        let Some(gone) = kept.entries.remove(id) else { return false };
        kept.bytes -= gone.bytes;
        kept.order.retain(|k| k != id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_past_the_count() {
        let store = Store::default();
        for i in 0..=STORE_COUNT {
            store.put(format!("resp_{i}"), None, vec![lmstudio::ChatMessage::new("user", "x")]);
        }
        assert!(store.get("resp_0").is_none() && store.get("resp_1").is_some());
        assert!(store.remove("resp_1") && !store.remove("resp_1") && store.get("resp_1").is_none());
        assert_eq!(lock(&store.inner).bytes, STORE_COUNT - 1);
    }
}
