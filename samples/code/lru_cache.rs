//! A small least-recently-used (LRU) cache.
//!
//! The cache holds at most `capacity` entries. Reading or writing a key marks it as the most
//! recently used; when an insert would exceed the capacity, the entry that was used longest ago
//! is evicted. Both `get` and `put` run in O(1) time.
//!
//! The implementation keeps a `HashMap` from key to slot index, and a doubly linked list of
//! slots stored in a `Vec` (indices instead of pointers, so no `unsafe` is needed). The head of
//! the list is the most recently used entry and the tail is the next one to be evicted.
//!
//! ```ignore
//! let mut cache = LruCache::new(2);
//! cache.put("a", 1);
//! cache.put("b", 2);
//! cache.get(&"a");            // "a" is now the most recently used
//! cache.put("c", 3);          // evicts "b", the least recently used
//! assert_eq!(cache.get(&"b"), None);
//! ```

use std::collections::HashMap;
use std::hash::Hash;

/// Marker for "no neighbour" in the intrusive linked list.
const NIL: usize = usize::MAX;

/// One slot of the linked list: a key/value pair plus the indices of its neighbours.
struct Node<K, V> {
    key: K,
    value: V,
    prev: usize,
    next: usize,
}

/// A fixed-capacity cache that evicts the least recently used entry when full.
pub struct LruCache<K, V> {
    capacity: usize,
    map: HashMap<K, usize>,
    nodes: Vec<Node<K, V>>,
    /// Most recently used slot, or `NIL` when empty.
    head: usize,
    /// Least recently used slot (the eviction candidate), or `NIL` when empty.
    tail: usize,
}

impl<K: Hash + Eq + Clone, V> LruCache<K, V> {
    /// Creates an empty cache that holds up to `capacity` entries.
    ///
    /// # Panics
    ///
    /// Panics if `capacity` is zero, since such a cache could never hold anything.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "LRU cache capacity must be at least 1");
        LruCache {
            capacity,
            map: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
        }
    }

    /// Number of entries currently stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Returns `true` when the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks up `key` and, if present, marks it as the most recently used entry.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let idx = *self.map.get(key)?;
        self.move_to_front(idx);
        Some(&self.nodes[idx].value)
    }

    /// Looks up `key` without changing its position in the recency order.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|&idx| &self.nodes[idx].value)
    }

    /// Inserts or updates `key`, making it the most recently used entry.
    ///
    /// If the key was new and the cache was already full, the least recently used entry is
    /// evicted and returned as `Some((key, value))`. Updating an existing key never evicts.
    pub fn put(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some(&idx) = self.map.get(&key) {
            self.nodes[idx].value = value;
            self.move_to_front(idx);
            return None;
        }

        if self.map.len() < self.capacity {
            let idx = self.nodes.len();
            self.nodes.push(Node { key: key.clone(), value, prev: NIL, next: NIL });
            self.map.insert(key, idx);
            self.push_front(idx);
            return None;
        }

        // Full: reuse the tail slot for the new entry and hand back what was there.
        let idx = self.tail;
        self.unlink(idx);
        let old_key = std::mem::replace(&mut self.nodes[idx].key, key.clone());
        let old_value = std::mem::replace(&mut self.nodes[idx].value, value);
        self.map.remove(&old_key);
        self.map.insert(key, idx);
        self.push_front(idx);
        Some((old_key, old_value))
    }

    /// Detaches slot `idx` from the list, fixing up its neighbours and the head/tail.
    fn unlink(&mut self, idx: usize) {
        let (prev, next) = (self.nodes[idx].prev, self.nodes[idx].next);
        if prev != NIL {
            self.nodes[prev].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next].prev = prev;
        } else {
            self.tail = prev;
        }
        self.nodes[idx].prev = NIL;
        self.nodes[idx].next = NIL;
    }

    /// Places a detached slot at the head of the list (most recently used).
    fn push_front(&mut self, idx: usize) {
        self.nodes[idx].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = idx;
        }
        self.head = idx;
        if self.tail == NIL {
            self.tail = idx;
        }
    }

    /// Marks slot `idx` as the most recently used.
    fn move_to_front(&mut self, idx: usize) {
        if self.head != idx {
            self.unlink(idx);
            self.push_front(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_entry() {
        let mut cache = LruCache::new(2);
        cache.put(1, "one");
        cache.put(2, "two");
        assert_eq!(cache.get(&1), Some(&"one"));
        assert_eq!(cache.put(3, "three"), Some((2, "two")));
        assert_eq!(cache.peek(&2), None);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn updating_a_key_refreshes_it_without_eviction() {
        let mut cache = LruCache::new(2);
        cache.put("x", 1);
        cache.put("y", 2);
        assert_eq!(cache.put("x", 10), None);
        cache.put("z", 3); // "y" is now the oldest
        assert_eq!(cache.peek(&"y"), None);
        assert_eq!(cache.peek(&"x"), Some(&10));
    }
}
