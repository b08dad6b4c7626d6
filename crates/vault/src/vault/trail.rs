//! Reading the audit trail back: ListAudit, and VerifyAudit, which walks the hash chain.
//!
//! Every row written since the chain began carries a link: an HMAC, under a key only the vault
//! holds, over the previous row's link and the row itself. Walking the rows in id order and
//! recomputing each link finds the first row that was edited (its own link no longer matches)
//! or that follows a removed row (its link was made after another one), and the chain's head
//! (the newest link, kept in `vault.audit_head`) shows rows removed from the end.

use super::Vault;
use super::audited::denied;
use crate::audit::AuditRecord;
use crate::authz::{Access, Method};
use crate::error::VaultError;
use crate::store::AuditFilter;

/// Rows read per query while walking the chain.
const PAGE_ROWS: i64 = 1_000;

/// Most rows one ListAudit call returns.
pub const MAX_LISTED_ROWS: u32 = 1_000;

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Chained rows whose links were recomputed and matched.
    pub rows_checked: u64,
    /// Rows written before the chain began, which carry no link.
    pub unchained: u64,
    /// The first place where the chain breaks; `None` when it holds from start to head.
    pub broken: Option<BrokenChain>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenChain {
    /// The first row that fails, or for a removed tail the row the head names.
    pub id: i64,
    /// What is wrong, in one line.
    pub problem: String,
}

/// One row of a ListAudit answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAuditRow {
    /// The row.
    pub record: AuditRecord,
    /// Whether it carries a chain link (rows older than the chain do not).
    pub chained: bool,
}

impl Vault {
    /// Up to `limit` audit rows after `after_id` that `filter` admits, in id order.
    pub async fn list_audit(
        &self,
        access: &Access,
        filter: &AuditFilter,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ListedAuditRow>, VaultError> {
        if !access.allowed {
            return Err(denied(&access.caller, Method::ListAudit));
        }
        let limit = if limit == 0 { MAX_LISTED_ROWS } else { limit.min(MAX_LISTED_ROWS) };
        let rows = self.store.audit_rows(after_id, i64::from(limit), filter, true).await?;
        Ok(rows
            .into_iter()
            .map(|(record, link)| ListedAuditRow { record, chained: link.is_some() })
            .collect())
    }

    /// Walks the whole chain and says whether it holds.
    pub async fn verify_audit(&self, access: &Access) -> Result<AuditVerification, VaultError> {
        if !access.allowed {
            return Err(denied(&access.caller, Method::VerifyAudit));
        }
        // The head first: rows appended during the walk come after it and are not judged.
        let head = self.store.audit_head().await?;
        let mut walk = ChainWalk::default();
        let mut after = 0;
        loop {
            let rows =
                self.store.audit_rows(after, PAGE_ROWS, &AuditFilter::default(), false).await?;
            let Some((last, _)) = rows.last() else { break };
            after = last.id;
            for (record, link) in &rows {
                if record.id > head.last_id {
                    break;
                }
                walk.step(&self.chain, record, link.as_deref());
                if walk.broken.is_some() {
                    return Ok(walk.finish());
                }
            }
            if after >= head.last_id {
                break;
            }
        }
        walk.end_at(head.last_id, &head.link);
        Ok(walk.finish())
    }
}

/// The state of a walk along the chain.
#[derive(Default)]
struct ChainWalk {
    /// The link of the last chained row seen (empty before the first).
    previous: Vec<u8>,
    last_id: i64,
    rows_checked: u64,
    unchained: u64,
    broken: Option<BrokenChain>,
}

impl ChainWalk {
    fn step(
        &mut self,
        chain: &crate::crypto::AuditChain,
        record: &AuditRecord,
        link: Option<&[u8]>,
    ) {
        let break_at = |problem: &str| Some(BrokenChain { id: record.id, problem: problem.into() });
        match link {
            None if self.rows_checked == 0 => self.unchained += 1,
            None => self.broken = break_at("has no link although rows before it do"),
            Some(link) => {
                if chain.verify(&self.previous, &record.chain_bytes(), link) {
                    self.previous = link.to_vec();
                    self.last_id = record.id;
                    self.rows_checked += 1;
                } else {
                    self.broken = break_at(
                        "does not match its link: it was edited, or a row before it was removed",
                    );
                }
            }
        }
    }

    /// The walk reached the rows the head covers: the head must name the last row seen.
    fn end_at(&mut self, head_id: i64, head_link: &[u8]) {
        if head_id != self.last_id || head_link != self.previous.as_slice() {
            self.broken = Some(BrokenChain {
                id: head_id,
                problem: format!(
                    "the chain's head names row {head_id}, but the chain ends at row {}: rows were \
                     removed from the end",
                    self.last_id
                ),
            });
        }
    }

    fn finish(self) -> AuditVerification {
        AuditVerification {
            rows_checked: self.rows_checked,
            unchained: self.unchained,
            broken: self.broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_ring::ring;

    fn record(id: i64, purpose: &str) -> AuditRecord {
        AuditRecord {
            id,
            at_us: 1_700_000_000_000_000 + id,
            caller: "anonymous".into(),
            method: "Detokenize".into(),
            purpose: purpose.into(),
            token_count: 1,
            outcome: "denied".into(),
            found: 0,
            not_found: 0,
            forgotten: 0,
            detail: None,
        }
    }

    /// A row and its link, as read back.
    type Linked = (AuditRecord, Option<Vec<u8>>);

    /// Rows 1 and 2 unchained, 3 to 6 chained; the last link.
    fn trail() -> (Vec<Linked>, Vec<u8>) {
        let chain = ring().audit_chain();
        let mut rows: Vec<Linked> = (1..=2).map(|id| (record(id, "old"), None)).collect();
        let mut previous = Vec::new();
        for id in 3..=6 {
            let row = record(id, &format!("ticket {id}"));
            let link = chain.link(&previous, &row.chain_bytes());
            previous = link.clone();
            rows.push((row, Some(link)));
        }
        (rows, previous)
    }

    fn walk(rows: &[Linked], head: (i64, &[u8])) -> AuditVerification {
        let chain = ring().audit_chain();
        let mut walk = ChainWalk::default();
        for (record, link) in rows {
            walk.step(&chain, record, link.as_deref());
            if walk.broken.is_some() {
                return walk.finish();
            }
        }
        walk.end_at(head.0, head.1);
        walk.finish()
    }

    #[test]
    fn an_intact_trail_verifies_and_counts_the_rows_before_the_chain() {
        let (rows, head) = trail();
        let verified = walk(&rows, (6, &head));
        assert_eq!((verified.rows_checked, verified.unchained, verified.broken), (4, 2, None));
    }

    #[test]
    fn an_edited_row_is_named() {
        let (mut rows, head) = trail();
        rows[3].0.purpose = "nothing to see".into();
        assert_eq!(walk(&rows, (6, &head)).broken.map(|b| b.id), Some(4));
    }

    #[test]
    fn a_removed_row_breaks_the_chain_at_the_next_one() {
        let (mut rows, head) = trail();
        rows.remove(3);
        assert_eq!(walk(&rows, (6, &head)).broken.map(|b| b.id), Some(5));
    }

    #[test]
    fn a_removed_tail_is_seen_from_the_head() {
        let (mut rows, head) = trail();
        rows.truncate(5);
        let broken = walk(&rows, (6, &head)).broken.expect("broken");
        assert_eq!(broken.id, 6);
        assert!(broken.problem.contains("removed from the end"), "{}", broken.problem);
    }
}
