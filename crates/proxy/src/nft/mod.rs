//! The nftables backend: a table per family, kept in step with the Services
//! by transactions that touch only what changed (new chains added, changed
//! ones flushed and rewritten, map elements added and deleted, chains no
//! longer used flushed at once and deleted a little later, as kube-proxy
//! does). The kernel's rules are never read back: what was applied is kept
//! here, and a refused transaction makes the next sync rebuild the table.

pub mod apply;
pub mod ir;
pub mod netlink;
pub mod render;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ir::{Key, Op, Ruleset, Syntax};
use render::{Contribution, MAPS, NftConfig};

use crate::model::ServiceName;

/// What writes transactions to the kernel: a netlink socket kept open (the default:
/// nothing is dumped first, so a change costs about its own size however big the
/// table), or `nft -f -` as kube-proxy runs it (the same tables, `nft` needed).
#[derive(Clone, Debug)]
pub enum Writer {
    Netlink(netlink::Netlink),
    Nft(apply::Nft),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Nft(#[from] apply::NftError),
}

impl Writer {
    /// Applies one transaction: all of it or none.
    pub async fn apply(&self, plan: &Plan) -> Result<(), WriteError> {
        match self {
            Writer::Netlink(n) => Ok(n.apply(plan).await?),
            Writer::Nft(n) => Ok(n.apply(&plan.text()).await?),
        }
    }

    /// Whether the kernel takes transactions written this way here.
    pub async fn check(&self) -> Result<(), WriteError> {
        match self {
            Writer::Netlink(n) => Ok(n.check().await?),
            Writer::Nft(n) => Ok(n.check().await?),
        }
    }

    /// Removes `family`'s table `name`, if there is one.
    pub async fn remove_table(&self, family: kubesvc_api::net::Family, name: &str) -> Result<(), WriteError> {
        match self {
            Writer::Netlink(n) => Ok(n.remove_table(family, name).await?),
            Writer::Nft(n) => {
                let fam = Syntax { family }.nft_family();
                Ok(n.apply(&format!("add table {fam} {name}\ndelete table {fam} {name}\n")).await?)
            }
        }
    }

    /// How it writes, for logs: `netlink` or `nft`.
    pub fn name(&self) -> &'static str {
        match self {
            Writer::Netlink(_) => "netlink",
            Writer::Nft(_) => "nft",
        }
    }
}

/// How long a chain no longer used stays (flushed) before it is deleted.
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// What one Service has in the kernel: its chains by name with a fingerprint of their
/// rules (enough to tell a changed chain; the rules themselves are kept only when
/// asked, for the tracer), its elements and sets. A 10,000-Service table's record is a
/// fifth of what the full rules would take.
#[derive(Default)]
struct Applied {
    chains: BTreeMap<String, Fingerprint>,
    rules: BTreeMap<String, Vec<ir::Rule>>,
    elements: BTreeMap<(&'static str, Key), ir::Verdict>,
    set_elements: std::collections::BTreeSet<(&'static str, IpAddr)>,
    affinity_sets: BTreeMap<String, u32>,
}

/// 128 bits of two independent hashes of a chain's rules: a collision (a changed chain
/// taken for unchanged) is beyond any realistic count of changes.
type Fingerprint = (u64, u64);

fn fingerprint(rules: &[ir::Rule]) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    let mut a = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x6b75_6265_7376_6321u64.hash(&mut b);
    rules.hash(&mut b);
    (a.finish(), b.finish())
}

/// One family's table: its config and what the kernel holds.
pub struct Table {
    cfg: NftConfig,
    applied: HashMap<ServiceName, Applied>,
    /// Keep every chain's rules (for [`Table::ruleset`]), not just their fingerprints.
    keep_rules: bool,
    owners: HashMap<(&'static str, Key), ServiceName>,
    set_owners: HashMap<(&'static str, IpAddr), ServiceName>,
    stale_chains: BTreeMap<String, Instant>,
    stale_sets: BTreeMap<String, Instant>,
    needs_full: bool,
}

/// Two Services claiming one address and port: the first keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub service: ServiceName,
    pub owner: ServiceName,
    pub what: String,
}

/// The transaction a sync produced.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub full: bool,
    pub conflicts: Vec<Conflict>,
    syntax: Syntax,
    table: String,
}

impl Table {
    pub fn new(cfg: NftConfig) -> Table {
        Table {
            cfg,
            applied: HashMap::new(),
            keep_rules: false,
            owners: HashMap::new(),
            set_owners: HashMap::new(),
            stale_chains: BTreeMap::new(),
            stale_sets: BTreeMap::new(),
            needs_full: true,
        }
    }

    /// A table that keeps every applied rule, so [`Table::ruleset`] can give the whole
    /// table to the tracer (tests; the proxy keeps fingerprints only).
    pub fn keeping_rules(cfg: NftConfig) -> Table {
        Table { keep_rules: true, ..Table::new(cfg) }
    }

    /// A transaction of just `ops` for this table (nothing in its record changes), for
    /// measuring and probing the kernel.
    pub fn raw_plan(&self, ops: Vec<Op>) -> Plan {
        Plan { ops, syntax: self.cfg.syntax(), table: self.cfg.table.clone(), ..Plan::default() }
    }

    pub fn config(&self) -> &NftConfig {
        &self.cfg
    }

    /// The next sync rebuilds the whole table (at start, and after a refused transaction).
    pub fn needs_full(&self) -> bool {
        self.needs_full
    }

    /// Forgets what was applied: the next plan rebuilds the table from every Service.
    pub fn reset(&mut self) {
        self.applied.clear();
        self.owners.clear();
        self.set_owners.clear();
        self.stale_chains.clear();
        self.stale_sets.clear();
        self.needs_full = true;
    }

    /// When stale chains or sets are due for deletion.
    pub fn next_cleanup(&self) -> Option<Instant> {
        self.stale_chains.values().chain(self.stale_sets.values()).min().map(|t| *t + STALE_CHAIN_DELAY)
    }

    /// The whole table as data, for the tracer (walks every Service: tests only; the
    /// table must be [`Table::keeping_rules`]).
    pub fn ruleset(&self) -> Ruleset {
        let mut rs = render::base_ruleset(&self.cfg);
        for a in self.applied.values() {
            let c = Contribution {
                chains: a.rules.clone(),
                elements: a.elements.clone(),
                set_elements: a.set_elements.clone(),
                affinity_sets: a.affinity_sets.clone(),
            };
            c.merge_into(&mut rs);
        }
        rs
    }

    /// The transaction that brings the kernel from what was applied to `changes`
    /// (each changed Service's new contribution; empty for a Service gone). On a full
    /// sync `changes` must hold every Service. Records the result as applied: if the
    /// kernel refuses it, call [`Table::reset`].
    pub fn plan(&mut self, mut changes: Vec<(ServiceName, Contribution)>, now: Instant) -> Plan {
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        let syn = self.cfg.syntax();
        let mut plan = Plan { full: self.needs_full, syntax: syn, table: self.cfg.table.clone(), ..Plan::default() };
        // Phases, in the order the kernel needs them: what rules refer to exists before them,
        // elements go before they come back with another verdict.
        let mut decl = Vec::new();
        let mut flush = Vec::new();
        let mut rules = Vec::new();
        let mut del = Vec::new();
        let mut add = Vec::new();
        let mut stale_flush = Vec::new();
        let mut stale = Vec::new();
        if self.needs_full {
            self.reset();
            self.needs_full = false;
            decl.push(Op::RecreateTable);
            let base = render::base_ruleset(&self.cfg);
            for (name, rs) in base.chains {
                decl.push(Op::AddChain { name: name.clone(), base: base.base.get(&name).copied() });
                rules.extend(rs.into_iter().map(|rule| Op::AddRule { chain: name.clone(), rule }));
            }
            for (name, kind) in MAPS {
                decl.push(Op::AddMap { name, kind });
            }
            decl.push(Op::AddSet { name: render::CLUSTER_IPS.to_string(), timeout: None });
        }
        for (svc, mut new) in changes {
            let old = self.applied.remove(&svc).unwrap_or_default();
            for key in old.elements.keys() {
                if self.owners.get(key) == Some(&svc) {
                    self.owners.remove(key);
                }
            }
            for key in &old.set_elements {
                if self.set_owners.get(key) == Some(&svc) {
                    self.set_owners.remove(key);
                }
            }
            new.elements.retain(|key, _| match self.owners.get(key) {
                Some(owner) if *owner != svc => {
                    plan.conflicts.push(Conflict { service: svc.clone(), owner: owner.clone(), what: syn.key(&key.1) });
                    false
                }
                _ => true,
            });
            new.set_elements.retain(|key| !matches!(self.set_owners.get(key), Some(o) if *o != svc));
            for key in new.elements.keys() {
                self.owners.insert(*key, svc.clone());
            }
            for key in &new.set_elements {
                self.set_owners.insert(*key, svc.clone());
            }

            for (name, timeout) in &new.affinity_sets {
                if !old.affinity_sets.contains_key(name) && self.stale_sets.remove(name).is_none() {
                    decl.push(Op::AddSet { name: name.clone(), timeout: Some(*timeout) });
                }
            }
            for name in old.affinity_sets.keys().filter(|n| !new.affinity_sets.contains_key(*n)) {
                self.stale_sets.insert(name.clone(), now);
            }
            let mut prints = BTreeMap::new();
            for (name, rs) in &new.chains {
                let print = fingerprint(rs);
                prints.insert(name.clone(), print);
                match old.chains.get(name) {
                    Some(old_print) if *old_print == print => continue,
                    Some(_) => flush.push(Op::FlushChain(name.clone())),
                    None => {
                        // A chain flushed as stale still exists: reuse it.
                        if self.stale_chains.remove(name).is_none() {
                            decl.push(Op::AddChain { name: name.clone(), base: None });
                        }
                    }
                }
                rules.extend(rs.iter().map(|r| Op::AddRule { chain: name.clone(), rule: r.clone() }));
            }
            for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
                stale_flush.push(Op::FlushChain(name.clone()));
                self.stale_chains.insert(name.clone(), now);
            }
            for ((map, key), v) in &old.elements {
                if new.elements.get(&(*map, *key)) != Some(v) {
                    del.push(Op::DeleteElement { map, key: *key });
                }
            }
            for ((map, key), v) in &new.elements {
                if old.elements.get(&(*map, *key)) != Some(v) {
                    add.push(Op::AddElement { map, key: *key, verdict: v.clone() });
                }
            }
            for (set, addr) in old.set_elements.difference(&new.set_elements) {
                del.push(Op::DeleteSetElement { set, addr: *addr });
            }
            for (set, addr) in new.set_elements.difference(&old.set_elements) {
                add.push(Op::AddSetElement { set, addr: *addr });
            }
            if !new.is_empty() || !new.affinity_sets.is_empty() {
                let rules = if self.keep_rules { new.chains } else { BTreeMap::new() };
                let applied = Applied {
                    chains: prints,
                    rules,
                    elements: new.elements,
                    set_elements: new.set_elements,
                    affinity_sets: new.affinity_sets,
                };
                self.applied.insert(svc, applied);
            }
        }
        // Chains flushed a while ago are deleted now (after the loop: one reused meanwhile is
        // no longer stale); nothing refers to them any more.
        let due: Vec<String> =
            self.stale_chains.iter().filter(|(_, t)| now >= **t + STALE_CHAIN_DELAY).map(|(n, _)| n.clone()).collect();
        for name in due {
            self.stale_chains.remove(&name);
            stale.push(Op::DeleteChain(name));
        }
        let due: Vec<String> =
            self.stale_sets.iter().filter(|(_, t)| now >= **t + STALE_CHAIN_DELAY).map(|(n, _)| n.clone()).collect();
        for name in due {
            self.stale_sets.remove(&name);
            stale.push(Op::DeleteSet(name));
        }
        plan.ops = [decl, flush, rules, del, add, stale_flush, stale].concat();
        plan
    }
}

impl Plan {
    /// The transaction as `nft -f` reads it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            out.push_str(&self.syntax.op(&self.table, op));
            out.push('\n');
        }
        out
    }

    /// The family's names and syntax the plan is for.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The table the plan changes.
    pub fn table(&self) -> &str {
        &self.table
    }
}

#[cfg(test)]
pub(crate) mod tests;
