//! A cache of `GET /v1/chain` pages: anonymous pulls of the same positions are answered
//! from bytes encoded once, until the chain changes (an append, a new or re-signed
//! head). Bounded in entries and bytes, so callers choosing odd positions cannot grow
//! it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::chain::{Chain, Page};
use crate::derive::KeyPath;

/// Most pages kept.
const MAX_PAGES: usize = 256;
/// Most bytes kept over all pages.
const MAX_BYTES: usize = 16 * 1024 * 1024;

type Key = (BTreeMap<KeyPath, u64>, usize);

#[derive(Default)]
struct Inner {
    version: Vec<(u64, Option<(u64, u64)>)>,
    pages: HashMap<Key, Arc<Page>>,
    bytes: usize,
}

/// The page cache.
#[derive(Default)]
pub struct PageCache {
    inner: Mutex<Inner>,
}

impl PageCache {
    /// The page of `chain` from `held`, at most `limit` entries (offloaded ones read by
    /// `older`, as [`Chain::since_with`] does), and whether it came from the cache.
    pub fn page<E>(
        &self,
        chain: &Chain,
        held: &BTreeMap<KeyPath, u64>,
        limit: usize,
        older: impl FnMut(&KeyPath, std::ops::Range<u64>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(Arc<Page>, bool), E> {
        let version = chain.version();
        let key = (held.clone(), limit);
        {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.version == version
                && let Some(page) = inner.pages.get(&key)
            {
                return Ok((page.clone(), true));
            }
        }
        let page = Arc::new(chain.since_with(held, limit, older)?);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.version != version {
            inner.version = version;
            inner.pages.clear();
            inner.bytes = 0;
        }
        if inner.pages.len() < MAX_PAGES && inner.bytes + page.bytes.len() <= MAX_BYTES {
            inner.bytes += page.bytes.len();
            inner.pages.insert(key, page.clone());
        }
        Ok((page, false))
    }
}
