//! The cluster chain: the root log and the branch logs held, verified together by one
//! engine. Ceremonies, keyd, keyctl and nodes all hold their part of the chain in a
//! [`Chain`]: built by appending (every entry is verified before it is kept, so a
//! writer never produces a chain that does not verify), read from files and pulls
//! (`update`), written back to files.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;

use super::entry::{self, Entry, Head, Record, Records, encode_log};
use super::error::{ChainError, Rule};
pub use super::log::Log;
use super::state::ChainState;
use super::statement::Statement;
use crate::derive::KeyPath;

/// The logs of a cluster this holder has, and the state they verify to.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    state: ChainState,
    logs: BTreeMap<KeyPath, Log>,
}

/// Verifies a whole chain file: every log from its first entry, each closed by its
/// signed head, laid out as [`Chain::to_file`] writes it (root log first, then the
/// branch logs in path order), so the file is the one encoding of the chain it holds.
pub fn verify_file(bytes: &[u8]) -> Result<Chain, ChainError> {
    let mut chain = Chain::new();
    chain.apply_records(bytes, true)?;
    chain.check_complete()?;
    if chain.logs.is_empty() {
        return Err(ChainError {
            position: 0,
            log: None,
            seq: None,
            rule: Rule::NoHead,
        });
    }
    Ok(chain)
}

/// What a pull from a holder's position brought: the bytes and whether every log
/// reached its head.
#[derive(Debug)]
pub struct Page {
    /// Records: per log, its new entries and, when the log is complete, its head.
    pub bytes: Vec<u8>,
    /// Whether every log is complete (no more pages).
    pub complete: bool,
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room in the state for `entries` more entries (see [`ChainState::reserve`]).
    pub fn reserve(&mut self, entries: usize) {
        self.state.reserve(entries);
    }

    /// The verified state.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Every log held, root log first.
    pub fn logs(&self) -> impl Iterator<Item = (&KeyPath, &Log)> {
        self.logs.iter()
    }

    /// A log, if held.
    pub fn log(&self, log: &KeyPath) -> Option<&Log> {
        self.logs.get(log)
    }

    /// The entries of a log held in memory (none for a log not held): every entry,
    /// unless the log was restored offloaded ([`Chain::restore_offloaded`]): then
    /// those appended since. [`Chain::log_len`] counts them all.
    pub fn entries(&self, log: &KeyPath) -> &[Entry] {
        self.logs.get(log).map_or(&[], |l| &l.entries)
    }

    /// The hash of the entry at `seq` of `log`, held in memory or offloaded.
    pub fn entry_hash(&self, log: &KeyPath, seq: u64) -> Option<[u8; 32]> {
        self.logs.get(log)?.hash(seq)
    }

    /// How many entries a log has, held in memory or not (0 for a log not held).
    pub fn log_len(&self, log: &KeyPath) -> u64 {
        self.logs.get(log).map_or(0, Log::len)
    }

    /// The latest verified head of a log.
    pub fn head(&self, log: &KeyPath) -> Option<&Head> {
        self.logs.get(log).and_then(|l| l.head.as_ref())
    }

    /// Entries over all logs (held in memory or not).
    pub fn len(&self) -> usize {
        self.logs.values().map(|l| l.len() as usize).sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `statement` to `log` at `appended_at` (never before the log's last
    /// entry), if the engine accepts it.
    pub fn append(
        &mut self,
        log: &KeyPath,
        statement: Statement,
        appended_at: u64,
    ) -> Result<&Entry, Rule> {
        let link = self.state.link(log);
        let entry = Entry {
            log: log.clone(),
            seq: link.next_seq,
            prev: link.last_hash,
            statement,
            appended_at: appended_at.max(link.last_appended_at),
        };
        self.state.apply(&entry)?;
        let held = self.logs.entry(log.clone()).or_default();
        held.entries.push(entry);
        Ok(&held.entries[held.entries.len() - 1])
    }

    /// Signs a head of `log` over its last entry at `signed_at` with the log's
    /// authority key, checks it and keeps it.
    pub fn sign_head(
        &mut self,
        log: &KeyPath,
        key: &SigningKey,
        signed_at: u64,
    ) -> Result<&Head, Rule> {
        let link = self.state.link(log);
        let seq = link
            .last_seq()
            .ok_or(Rule::UnknownLog { log: log.clone() })?;
        let head = Head::sign(log.clone(), seq, link.last_hash, signed_at, key);
        self.set_head(head)
    }

    /// Verifies `head` against its log and keeps it as the log's head. A head signed
    /// before the one held is refused: heads only move forward in time.
    pub fn set_head(&mut self, head: Head) -> Result<&Head, Rule> {
        self.state.verify_head(&head)?;
        let held = self.logs.entry(head.log.clone()).or_default();
        if let Some(h) = &held.head
            && head.signed_at < h.signed_at
        {
            return Err(Rule::OlderHead {
                log: head.log.clone(),
                signed_at: head.signed_at,
                held: h.signed_at,
            });
        }
        Ok(held.head.insert(head))
    }

    /// Restores a log stored by its holder, with its stored head. With `trusted` (a log
    /// this process wrote itself, under a head its own key signed) entries are checked
    /// by their links only and the head's signature vouches for them all (see
    /// [`ChainState::apply_trusted`]); otherwise every entry is verified. The head must
    /// name the last entry.
    pub fn restore_log(
        &mut self,
        entries: Vec<Entry>,
        head: Head,
        trusted: bool,
    ) -> Result<(), ChainError> {
        if trusted {
            let hashes: Vec<[u8; 32]> = entries.iter().map(Entry::hash).collect();
            return self.restore_hashed(entries, &hashes, head);
        }
        let log = head.log.clone();
        for (i, e) in entries.iter().enumerate() {
            Self::check_stored_in(&log, i, e)?;
            self.state
                .apply(e)
                .map_err(|rule| Self::restore_error(&log, i, Some(e.seq), rule))?;
        }
        self.keep_restored(log, entries, head)
    }

    /// [`Chain::restore_log`] of a trusted log whose entries' hashes were computed from
    /// the bytes they were stored as (`hashes[i]` of `entries[i]`): each entry is checked
    /// by its link to the one before, its place, and the signed head over the last hash,
    /// without encoding any entry again.
    pub fn restore_hashed(
        &mut self,
        entries: Vec<Entry>,
        hashes: &[[u8; 32]],
        head: Head,
    ) -> Result<(), ChainError> {
        self.check_hashed(&entries, hashes, &head)?;
        self.logs.insert(head.log.clone(), Log::new(entries, head));
        Ok(())
    }

    /// [`Chain::restore_hashed`], keeping only the entries' hashes in memory: the holder
    /// serves the entries from its store (reading them back with
    /// [`Chain::since_with`], each checked against its hash). Entries appended later
    /// are held as usual.
    pub fn restore_offloaded(
        &mut self,
        entries: Vec<Entry>,
        hashes: Vec<[u8; 32]>,
        head: Head,
    ) -> Result<(), ChainError> {
        self.check_hashed(&entries, &hashes, &head)?;
        drop(entries);
        let log = head.log.clone();
        self.logs.insert(log, Log::offloaded(hashes, head));
        Ok(())
    }

    /// Applies stored entries by their links and places, then checks the head.
    fn check_hashed(
        &mut self,
        entries: &[Entry],
        hashes: &[[u8; 32]],
        head: &Head,
    ) -> Result<(), ChainError> {
        let log = head.log.clone();
        if hashes.len() != entries.len() {
            return Err(Self::restore_error(
                &log,
                0,
                None,
                Rule::HeadMismatch {
                    seq: head.seq,
                    last: i128::try_from(hashes.len()).unwrap_or(i128::MAX) - 1,
                },
            ));
        }
        for (i, (e, hash)) in entries.iter().zip(hashes).enumerate() {
            Self::check_stored_in(&log, i, e)?;
            self.state
                .apply_trusted_hashed(e, *hash)
                .map_err(|rule| Self::restore_error(&log, i, Some(e.seq), rule))?;
        }
        self.state
            .verify_head(head)
            .map_err(|rule| Self::restore_error(&log, entries.len(), None, rule))
    }

    fn restore_error(log: &KeyPath, position: usize, seq: Option<u64>, rule: Rule) -> ChainError {
        ChainError {
            position,
            log: Some(log.clone()),
            seq,
            rule,
        }
    }

    /// Refuses an entry stored among another log's entries.
    fn check_stored_in(log: &KeyPath, i: usize, e: &Entry) -> Result<(), ChainError> {
        if e.log == *log {
            return Ok(());
        }
        Err(Self::restore_error(
            log,
            i,
            Some(e.seq),
            Rule::WrongLog {
                log: e.log.clone(),
                kind: e.statement.body.kind(),
                why: format!("stored among the entries of log {log}"),
            },
        ))
    }

    /// Checks the head of a restored log and keeps the log.
    fn keep_restored(
        &mut self,
        log: KeyPath,
        entries: Vec<Entry>,
        head: Head,
    ) -> Result<(), ChainError> {
        self.state
            .verify_head(&head)
            .map_err(|rule| Self::restore_error(&log, entries.len(), None, rule))?;
        self.logs.insert(log, Log::new(entries, head));
        Ok(())
    }

    /// Verifies records (a chain file, or a pull from the positions held) and applies
    /// them: per log, entries this chain already holds must be identical, new ones are
    /// verified like any entry, and a head must close the log as it then stands. A log
    /// section may end without a head (a page cut short): the log is then incomplete
    /// until a later pull brings its head. Returns how many entries were new.
    ///
    /// The state is updated in place, entry by entry (no copy of a large state): on an
    /// error, the entries before the bad one stay applied (each verified on its own) and
    /// each log's head stays the last one that verified.
    pub fn update(&mut self, bytes: &[u8]) -> Result<usize, ChainError> {
        self.apply_records(bytes, false)
    }

    /// [`Chain::update`]; with `file_layout`, the records must also be laid out as
    /// [`Chain::to_file`] writes them (each log's section whole, its entries then its
    /// head, and the sections in log order, root log first), so that a file that
    /// verifies has that one encoding.
    fn apply_records(&mut self, bytes: &[u8], file_layout: bool) -> Result<usize, ChainError> {
        let mut new = 0;
        let mut closed: BTreeSet<KeyPath> = BTreeSet::new();
        // Only the entries held before this update may be repeated (identically): an
        // entry repeated within the update is applied again, and refused as a duplicate.
        let held_before: BTreeMap<KeyPath, u64> = self
            .logs
            .iter()
            .map(|(log, l)| (log.clone(), l.len()))
            .collect();
        let mut section: Option<KeyPath> = None;
        for (position, record) in Records::new(bytes).enumerate() {
            let fail = |log: Option<&KeyPath>, seq, rule| ChainError {
                position,
                log: log.cloned(),
                seq,
                rule,
            };
            let (_, record, raw) =
                record.map_err(|(_, e)| fail(None, None, super::decode_rule(e)))?;
            if file_layout {
                let (log, seq) = match &record {
                    Record::Entry(e) => (&e.log, Some(e.seq)),
                    Record::Head(h) => (&h.log, None),
                };
                if section.as_ref() != Some(log)
                    && let Some(current) = &section
                {
                    if !closed.contains(current) {
                        return Err(fail(
                            Some(current),
                            None,
                            Rule::LogWithoutHead {
                                log: current.clone(),
                            },
                        ));
                    }
                    if log < current && !closed.contains(log) {
                        return Err(fail(
                            Some(log),
                            seq,
                            Rule::LogOrder {
                                log: log.clone(),
                                after: current.clone(),
                            },
                        ));
                    }
                }
                if section.as_ref() != Some(log) {
                    section = Some(log.clone());
                }
            }
            match record {
                Record::Entry(entry) => {
                    let (log, seq) = (entry.log.clone(), entry.seq);
                    if closed.contains(&log) {
                        return Err(fail(Some(&log), Some(seq), Rule::AfterHead));
                    }
                    let held = held_before.get(&log).copied().unwrap_or(0);
                    let hash = entry::entry_hash_of_record(raw).unwrap_or_else(|| entry.hash());
                    // An entry held (in memory, or offloaded: by its hash) must repeat.
                    let same = (seq < held)
                        .then(|| self.logs.get(&log))
                        .flatten()
                        .map(|l| match l.entry(seq) {
                            Some(ours) => *ours == entry,
                            None => l.hash(seq) == Some(hash),
                        });
                    match same {
                        Some(true) => {}
                        Some(false) => {
                            return Err(fail(Some(&log), Some(seq), Rule::Diverged { seq }));
                        }
                        None => {
                            self.state
                                .apply_hashed(&entry, hash)
                                .map_err(|rule| fail(Some(&log), Some(seq), rule))?;
                            self.logs.entry(log).or_default().entries.push(entry);
                            new += 1;
                        }
                    }
                }
                Record::Head(head) => {
                    let log = head.log.clone();
                    if closed.contains(&log) {
                        return Err(fail(Some(&log), None, Rule::AfterHead));
                    }
                    self.set_head(head)
                        .map_err(|rule| fail(Some(&log), None, rule))?;
                    closed.insert(log);
                }
            }
        }
        Ok(new)
    }

    /// Checks that every log held ends at its head (no page left to fetch).
    pub fn check_complete(&self) -> Result<(), ChainError> {
        for (log, held) in &self.logs {
            if !held.is_complete() {
                let rule = match &held.head {
                    None => Rule::LogWithoutHead { log: log.clone() },
                    Some(h) => Rule::Incomplete {
                        log: log.clone(),
                        head_seq: i128::from(h.seq),
                    },
                };
                return Err(ChainError {
                    position: 0,
                    log: Some(log.clone()),
                    seq: None,
                    rule,
                });
            }
        }
        Ok(())
    }

    /// Checks that the head of every branch log held is at most `max_age` seconds old
    /// at `now`. (The root log's head carries the time of its last ceremony: the root
    /// is offline, so its head cannot be kept fresh.)
    pub fn check_fresh(&self, now: u64, max_age: u64) -> Result<(), ChainError> {
        for (log, held) in self.logs.iter().filter(|(l, _)| l.depth() == 1) {
            if let Some(h) = &held.head
                && h.age(now) > max_age
            {
                return Err(ChainError {
                    position: 0,
                    log: Some(log.clone()),
                    seq: None,
                    rule: Rule::Stale {
                        log: log.clone(),
                        age: h.age(now),
                        signed_at: h.signed_at,
                        max_age,
                    },
                });
            }
        }
        Ok(())
    }

    /// The whole chain as a file: every log, root log first, each with its head.
    pub fn to_file(&self) -> Vec<u8> {
        self.file_of(self.logs.keys())
    }

    /// The named logs (those held) as a file, each with its head. Only for a chain
    /// that holds its entries in memory (nothing restored offloaded).
    pub fn file_of<'a>(&self, logs: impl IntoIterator<Item = &'a KeyPath>) -> Vec<u8> {
        let mut out = Vec::new();
        for log in logs {
            if let Some(held) = self.logs.get(log) {
                debug_assert_eq!(held.first_held(), 0, "file of an offloaded log");
                encode_log(&mut out, &held.entries, held.head.as_ref());
            }
        }
        out
    }

    /// [`Chain::file_of`], taking the records of offloaded entries from `older` (as
    /// [`Chain::since_with`] does).
    pub fn file_of_with<'a, E>(
        &self,
        logs: impl IntoIterator<Item = &'a KeyPath>,
        mut older: impl FnMut(&KeyPath, std::ops::Range<u64>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = Vec::new();
        for log in logs {
            if let Some(held) = self.logs.get(log) {
                if held.first_held() > 0 {
                    older(log, 0..held.first_held(), &mut out)?;
                }
                encode_log(&mut out, &held.entries, held.head.as_ref());
            }
        }
        Ok(out)
    }

    /// What a holder at positions `held` (per log, the seq of the next entry it needs;
    /// 0 for logs it does not name) lacks: at most `limit` entries (at least one per
    /// page), root log first, then branch logs in path order; each log section reaching
    /// the log's head ends with that head, even with no new entries, so the holder
    /// learns how fresh it is. Only for a chain that holds its entries in memory; a
    /// chain restored offloaded is served by [`Chain::since_with`].
    pub fn since(&self, held: &BTreeMap<KeyPath, u64>, limit: usize) -> Page {
        self.since_with(held, limit, |_, _, _| Err(()))
            .unwrap_or(Page {
                bytes: Vec::new(),
                complete: false,
            })
    }

    /// [`Chain::since`], taking the records of offloaded entries from `older`:
    /// `older(log, from, to, out)` appends to `out` the records of the entries of `log`
    /// from seq `from` up to `to` (excluded), as the store holds them (checked by the
    /// caller against [`Log::hash`]).
    pub fn since_with<E>(
        &self,
        held: &BTreeMap<KeyPath, u64>,
        limit: usize,
        mut older: impl FnMut(&KeyPath, std::ops::Range<u64>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Page, E> {
        let mut out = Vec::new();
        let mut budget = limit.max(1) as u64;
        for (log, l) in &self.logs {
            let len = l.len();
            let from = held.get(log).copied().unwrap_or(0).min(len);
            let to = from.saturating_add(budget).min(len);
            let complete = to == len && l.is_complete();
            budget -= to - from;
            let first_held = l.first_held().clamp(from, to);
            if from < first_held {
                older(log, from..first_held, &mut out)?;
            }
            encode_log(
                &mut out,
                l.entries_from(first_held).map_or(&[], |e| {
                    e.get(..usize::try_from(to - first_held).unwrap_or(0))
                        .unwrap_or(e)
                }),
                l.head.as_ref().filter(|_| complete),
            );
            if !complete {
                return Ok(Page {
                    bytes: out,
                    complete: false,
                });
            }
        }
        Ok(Page {
            bytes: out,
            complete: true,
        })
    }

    /// What identifies this chain's content for a cache of pages: per log, its entry
    /// count and its head's seq and signing time. Any append, head or re-signed head
    /// changes it.
    pub fn version(&self) -> Vec<(u64, Option<(u64, u64)>)> {
        self.logs
            .values()
            .map(|l| (l.len(), l.head.as_ref().map(|h| (h.seq, h.signed_at))))
            .collect()
    }

    /// The positions this chain holds: per log, the seq of the next entry it needs.
    pub fn positions(&self) -> BTreeMap<KeyPath, u64> {
        self.logs
            .iter()
            .map(|(log, l)| (log.clone(), l.len()))
            .collect()
    }
}
