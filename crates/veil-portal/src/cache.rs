//! The portal's view of the ledger, kept between requests.
//!
//! Why: every portal page used to read the whole ledger, parse every
//! entry and hash every leaf again (and [`Site::proof`] did it once more
//! per proof). At 10,000 entries and 200 patients browsing, that is the
//! whole cost of a page. The ledger is append-only, so a reader that has
//! seen the first `n` entries only needs the entries after `n`:
//! [`LedgerCache::refresh`] reads those (an index range scan on `seq`),
//! parses and hashes them once, and extends the per-patient index and the
//! recipe pins.
//!
//! Append-only is what the ledger promises, not what the cache assumes
//! blindly: a rewritten entry must never be served from the cache as if it
//! were still the signed one. Each refresh re-reads the last cached row
//! with the new ones and compares it; whenever the latest checkpoint
//! changes (and at least every [`FULL_CHECK_SECS`]) the whole stored
//! prefix is hashed again and its root compared with the cached root. Any
//! difference (an edited, deleted or reordered row) drops the cache and
//! rebuilds it from the store, so what is shown is what is stored, and
//! the head signature and the proofs then say whether that is what was
//! signed (as before: a rewritten log shows "not confirmed" and no proof).
//!
//! Proofs come from the cached leaf hashes through
//! [`veil_ledger::proof::bundle_hashed`], the same checks and the same
//! bundle as [`Site::proof`] (a test holds them equal).

use std::collections::HashMap;

use veil_ledger::merkle::{self, Hash};
use veil_ledger::{Checkpoint, Entry, Event, ProofBundle, ProofError};
use veil_release::Site;

use crate::Result;

/// How often (seconds) the whole cached prefix is compared with the
/// store even when no checkpoint was signed: bounds how long a rewrite of
/// an old row between checkpoints can go unnoticed by the cache (the
/// dashboard's verification sees it at its next run too).
pub const FULL_CHECK_SECS: i64 = 60;

/// A recipient's registration as logged: the recipe label and the
/// digest of its text, from position `at` on.
#[derive(Debug, Clone)]
struct Pin {
    at: u64,
    recipe: String,
    digest: String,
}

/// The ledger as last read, with what the portal looks up in it.
#[derive(Debug)]
pub struct LedgerCache {
    /// The exact leaf data (the proof bundle carries it).
    leaves: Vec<String>,
    /// Leaf hashes, in log order.
    hashes: Vec<Hash>,
    /// Parsed entries; `None` for a row that does not parse (shown
    /// nowhere, as before; `veil ledger verify` names it).
    entries: Vec<Option<Entry>>,
    /// Positions of each patient's entries, ascending.
    by_patient: HashMap<String, Vec<u64>>,
    /// Each recipient's registrations, in log order.
    pins: HashMap<String, Vec<Pin>>,
    /// Root over all cached hashes.
    root: Hash,
    /// Whether the head signature stored with the last row verifies
    /// over (size, root).
    head_ok: bool,
    /// The latest stored checkpoint when last refreshed.
    checkpoint: Option<Checkpoint>,
    /// When the whole prefix was last compared (unix seconds).
    full_checked_at: i64,
    /// Rebuilds after a detected rewrite (tests, logs).
    rebuilds: u64,
    /// Bundles already made against `checkpoint`, by position: a bundle
    /// depends only on the checkpoint and the prefix it covers, so it is
    /// dropped with them (a new checkpoint, a rebuild). Why: a proof is
    /// O(size) hashing, and patients look at the same entries again.
    proofs: std::sync::Mutex<HashMap<u64, ProofBundle>>,
}

fn same_checkpoint(a: &Option<Checkpoint>, b: &Option<Checkpoint>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.size == b.size && a.root == b.root && a.signature == b.signature && a.time == b.time
        }
        _ => false,
    }
}

impl Default for LedgerCache {
    fn default() -> Self {
        LedgerCache::new()
    }
}

impl LedgerCache {
    /// An empty cache; the first [`LedgerCache::refresh`] reads the whole
    /// ledger once.
    pub fn new() -> LedgerCache {
        LedgerCache {
            leaves: Vec::new(),
            hashes: Vec::new(),
            entries: Vec::new(),
            by_patient: HashMap::new(),
            pins: HashMap::new(),
            root: merkle::empty_root(),
            head_ok: true,
            checkpoint: None,
            full_checked_at: i64::MIN,
            rebuilds: 0,
            proofs: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Entries cached (the ledger's size at the last refresh).
    pub fn len(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Whether no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The root over every cached entry.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Whether the signed head stored with the last entry verifies over
    /// the cached size and root (what [`Site::disclosures_by_ref`] calls
    /// `head_signature_ok`).
    pub fn head_ok(&self) -> bool {
        self.head_ok
    }

    /// How many times a rewrite was detected and the cache rebuilt.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// The latest checkpoint as of the last refresh.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Entry at `position`, if cached and parsed.
    pub fn entry(&self, position: u64) -> Option<&Entry> {
        self.entries.get(position as usize)?.as_ref()
    }

    /// Every parsed entry with its position, in log order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u64, e.as_ref()?)))
    }

    /// The positions of `patient_ref`'s entries, ascending (from the
    /// index: no scan of the ledger).
    pub fn positions_of(&self, patient_ref: &str) -> &[u64] {
        self.by_patient
            .get(patient_ref)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The recipe label and digest that `recipient`'s latest registration
    /// before `position` pinned (what a release at `position` was made
    /// under).
    pub fn pinned_before(&self, recipient: &str, position: u64) -> Option<(&str, &str)> {
        let pins = self.pins.get(recipient)?;
        let n = pins.partition_point(|p| p.at < position);
        let p = pins.get(n.checked_sub(1)?)?;
        Some((p.recipe.as_str(), p.digest.as_str()))
    }

    fn proofs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ProofBundle>> {
        self.proofs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn proofs_mut(&mut self) -> &mut HashMap<u64, ProofBundle> {
        self.proofs.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn clear(&mut self) {
        let full_checked_at = self.full_checked_at;
        let rebuilds = self.rebuilds;
        let checkpoint = self.checkpoint.take();
        *self = LedgerCache::new();
        self.full_checked_at = full_checked_at;
        self.rebuilds = rebuilds;
        self.checkpoint = checkpoint;
    }

    fn push(&mut self, leaf: String) {
        let position = self.hashes.len() as u64;
        self.hashes.push(merkle::leaf_hash(leaf.as_bytes()));
        let entry = Entry::from_leaf(&leaf).ok();
        if let Some(e) = &entry {
            if let Some(p) = &e.patient_ref {
                self.by_patient.entry(p.clone()).or_default().push(position);
            }
            if matches!(
                e.event,
                Event::RecipientChange | Event::RecipientKeyRotation
            ) {
                if let Some(d) = &e.inputs_digest {
                    self.pins.entry(e.recipient.clone()).or_default().push(Pin {
                        at: position,
                        recipe: e.recipe.clone(),
                        digest: d.clone(),
                    });
                }
            }
        }
        self.entries.push(entry);
        self.leaves.push(leaf);
    }

    /// Appends `rows` (positions `len()..`), then recomputes the root and
    /// checks the head signature stored with the last one.
    fn extend(&mut self, site: &Site, rows: Vec<veil_store::veil_ledger_row::StoredRow>) {
        if rows.is_empty() {
            return;
        }
        let head_sig = rows.last().map(|r| r.head_sig.clone()).unwrap_or_default();
        for r in rows {
            self.push(r.entry);
        }
        self.root = merkle::root(&self.hashes);
        let vk = site.ledger_verifier();
        self.head_ok = veil_ledger::check_signature(
            vk.key(),
            &veil_ledger::head_message(self.len(), &self.root),
            &head_sig,
        );
    }

    /// Brings the cache up to the stored ledger at `now` (unix seconds):
    /// reads only the rows after the cached ones, except when a rewrite
    /// check is due (see the module documentation), and rebuilds from
    /// scratch when the stored prefix is not the cached one.
    pub fn refresh(&mut self, site: &mut Site, now: i64) -> Result<()> {
        let latest = site.store.checkpoints()?.pop().map(|c| Checkpoint {
            size: c.size.max(0) as u64,
            root: c.root,
            time: c.time,
            key_id: c.key_id,
            signature: c.signature,
        });
        let new_checkpoint = !same_checkpoint(&self.checkpoint, &latest);
        if new_checkpoint {
            self.proofs_mut().clear();
        }
        let full = new_checkpoint
            || now.saturating_sub(self.full_checked_at) >= FULL_CHECK_SECS
            || now < self.full_checked_at;
        self.checkpoint = latest;
        let n = self.len();
        if full {
            self.full_checked_at = now;
            let rows = site.store.ledger_rows()?;
            let prefix_ok = rows.len() as u64 >= n
                && rows.iter().enumerate().all(|(i, r)| r.seq == i as i64)
                && merkle::root(
                    &rows[..n as usize]
                        .iter()
                        .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
                        .collect::<Vec<_>>(),
                ) == self.root;
            if !prefix_ok {
                self.rebuild(site, rows);
                return Ok(());
            }
            let new = rows.into_iter().skip(n as usize).collect();
            self.extend(site, new);
            return Ok(());
        }
        // the last cached row comes back with the new ones: it must be
        // unchanged, and the positions must follow on
        let from = n.saturating_sub(1);
        let rows = site.store.ledger_rows_from(from as i64)?;
        let follows = rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == (from + i as u64) as i64);
        let last_same = n == 0
            || rows
                .first()
                .is_some_and(|r| self.leaves.last().is_some_and(|l| *l == r.entry));
        if !follows || !last_same {
            let rows = site.store.ledger_rows()?;
            self.rebuild(site, rows);
            return Ok(());
        }
        let new = rows.into_iter().skip(usize::from(n > 0)).collect();
        self.extend(site, new);
        Ok(())
    }

    fn rebuild(&mut self, site: &Site, rows: Vec<veil_store::veil_ledger_row::StoredRow>) {
        if !self.is_empty() {
            self.rebuilds += 1;
            tracing::warn!(
                cached = self.len(),
                stored = rows.len(),
                "ledger cache: the stored ledger is not the cached one (rewritten?); rebuilt"
            );
        }
        self.clear();
        self.extend(site, rows);
    }

    /// The proof bundle for `position` against the latest checkpoint, as
    /// [`Site::proof`] gives it (same errors), from the cached hashes.
    pub fn proof(
        &self,
        site: &Site,
        position: u64,
    ) -> std::result::Result<ProofBundle, ProofError> {
        match &self.checkpoint {
            Some(c) => {
                if let Some(b) = self.proofs().get(&position) {
                    return Ok(b.clone());
                }
                let b = veil_ledger::proof::bundle_hashed(
                    &self.hashes,
                    |i| self.leaves[i].clone(),
                    position,
                    c,
                    &site.ledger_verifier(),
                )?;
                self.proofs().insert(position, b.clone());
                Ok(b)
            }
            None if position >= self.len() => Err(ProofError::NoEntry {
                position,
                entries: self.len(),
            }),
            None => Err(ProofError::NoCheckpoint),
        }
    }
}
