//! The nftables rules kubesvc writes, as data: each rule is a list of
//! matches and statements with one textual form (what `nft -f` reads) and
//! one meaning (what the packet tracer evaluates), so tests check where
//! packets go rather than what the rule text says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};

use kubesvc_api::net::{Cidr, Family};

use crate::model::Protocol;

/// The mark that asks `masquerading` to SNAT a packet (kube-proxy's 0x4000).
pub const MASQ_MARK: u32 = 0x4000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    /// `ip saddr 10.0.0.0/8` (`!=` when `negated`); several CIDRs are several matches
    /// (negated: all must hold) or several rules, never an anonymous set (each of those
    /// is a set in the kernel, whose set handling grows with their number).
    Saddr {
        negated: bool,
        cidr: Cidr,
    },
    SaddrIs(IpAddr),
    SaddrInSet(String),
    DaddrIs(IpAddr),
    Daddr {
        negated: bool,
        cidr: Cidr,
    },
    DaddrInSet(String),
    /// `tcp dport 80`
    Dport(Protocol, u16),
    /// `meta l4proto tcp`
    L4Proto(Protocol),
    FibSaddrLocal,
    FibDaddrLocal,
    CtStateNew,
    /// `mark and 0x4000 == 0`
    MarkClear(u32),
    /// `numgen random mod N == 0`: true one time in N (a fresh number each rule).
    NumgenOneIn(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stmt {
    Jump(String),
    Goto(String),
    Return,
    Drop,
    Reject,
    /// `ip daddr . meta l4proto . th dport vmap @map`
    VmapAddrProtoPort(String),
    /// `meta l4proto . th dport vmap @map`
    VmapProtoPort(String),
    MarkOr(u32),
    MarkXor(u32),
    Masquerade {
        fully_random: bool,
    },
    /// `update @set { ip saddr }`
    UpdateSaddr(String),
    /// `meta l4proto tcp dnat to 10.0.0.1:80`
    Dnat(Protocol, SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub stmts: Vec<Stmt>,
    pub comment: Option<&'static str>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, stmts: Vec<Stmt>) -> Rule {
        Rule { matches, stmts, comment: None }
    }

    pub fn commented(mut self, c: &'static str) -> Rule {
        self.comment = Some(c);
        self
    }
}

/// A base chain's hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
}

/// A map's key: address . protocol . port, or protocol . port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    AddrProtoPort(IpAddr, Protocol, u16),
    ProtoPort(Protocol, u16),
}

/// A map element's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Goto(String),
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    AddrProtoPort,
    ProtoPort,
}

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The table made anew (added, deleted and added: it need not exist before).
    RecreateTable,
    AddChain {
        name: String,
        base: Option<BaseChain>,
    },
    FlushChain(String),
    DeleteChain(String),
    AddRule {
        chain: String,
        rule: Rule,
    },
    AddMap {
        name: &'static str,
        kind: MapKind,
    },
    /// A set of addresses; with a timeout, a dynamic one (session affinity).
    AddSet {
        name: String,
        timeout: Option<u32>,
    },
    DeleteSet(String),
    AddElement {
        map: &'static str,
        key: Key,
        verdict: Verdict,
    },
    DeleteElement {
        map: &'static str,
        key: Key,
    },
    AddSetElement {
        set: &'static str,
        addr: IpAddr,
    },
    DeleteSetElement {
        set: &'static str,
        addr: IpAddr,
    },
}

/// One family's names and syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syntax {
    pub family: Family,
}

impl Default for Syntax {
    fn default() -> Self {
        Syntax { family: Family::IPv4 }
    }
}

impl Syntax {
    pub fn nft_family(self) -> &'static str {
        match self.family {
            Family::IPv4 => "ip",
            Family::IPv6 => "ip6",
        }
    }

    pub fn addr_type(self) -> &'static str {
        match self.family {
            Family::IPv4 => "ipv4_addr",
            Family::IPv6 => "ipv6_addr",
        }
    }

    pub fn map_type(self, kind: MapKind) -> String {
        match kind {
            MapKind::AddrProtoPort => format!("{} . inet_proto . inet_service : verdict", self.addr_type()),
            MapKind::ProtoPort => "inet_proto . inet_service : verdict".to_string(),
        }
    }

    /// The rule's text after `add rule <family> <table> <chain> `.
    pub fn rule(self, r: &Rule) -> String {
        let ip = self.nft_family();
        let mut s = String::new();
        for m in &r.matches {
            match m {
                Match::Saddr { negated, cidr } => {
                    let _ = write!(s, "{ip} saddr {}{cidr}", if *negated { "!= " } else { "" });
                }
                Match::SaddrIs(a) => {
                    let _ = write!(s, "{ip} saddr {a}");
                }
                Match::SaddrInSet(set) => {
                    let _ = write!(s, "{ip} saddr @{set}");
                }
                Match::DaddrIs(a) => {
                    let _ = write!(s, "{ip} daddr {a}");
                }
                Match::Daddr { negated, cidr } => {
                    let _ = write!(s, "{ip} daddr {}{cidr}", if *negated { "!= " } else { "" });
                }
                Match::DaddrInSet(set) => {
                    let _ = write!(s, "{ip} daddr @{set}");
                }
                Match::Dport(p, port) => {
                    let _ = write!(s, "{} dport {port}", p.nft());
                }
                Match::L4Proto(p) => {
                    let _ = write!(s, "meta l4proto {}", p.nft());
                }
                Match::FibSaddrLocal => s.push_str("fib saddr type local"),
                Match::FibDaddrLocal => s.push_str("fib daddr type local"),
                Match::CtStateNew => s.push_str("ct state new"),
                Match::MarkClear(m) => {
                    let _ = write!(s, "mark and {m:#x} == 0");
                }
                Match::NumgenOneIn(n) => {
                    let _ = write!(s, "numgen random mod {n} == 0");
                }
            }
            s.push(' ');
        }
        for st in &r.stmts {
            match st {
                Stmt::Jump(c) => {
                    let _ = write!(s, "jump {c}");
                }
                Stmt::Goto(c) => {
                    let _ = write!(s, "goto {c}");
                }
                Stmt::Return => s.push_str("return"),
                Stmt::Drop => s.push_str("drop"),
                Stmt::Reject => s.push_str("reject"),
                Stmt::VmapAddrProtoPort(m) => {
                    let _ = write!(s, "{ip} daddr . meta l4proto . th dport vmap @{m}");
                }
                Stmt::VmapProtoPort(m) => {
                    let _ = write!(s, "meta l4proto . th dport vmap @{m}");
                }
                Stmt::MarkOr(m) => {
                    let _ = write!(s, "mark set mark or {m:#x}");
                }
                Stmt::MarkXor(m) => {
                    let _ = write!(s, "mark set mark xor {m:#x}");
                }
                Stmt::Masquerade { fully_random } => {
                    s.push_str(if *fully_random { "masquerade fully-random" } else { "masquerade" });
                }
                Stmt::UpdateSaddr(set) => {
                    let _ = write!(s, "update @{set} {{ {ip} saddr }}");
                }
                Stmt::Dnat(p, to) => {
                    let _ = write!(s, "meta l4proto {} dnat to {to}", p.nft());
                }
            }
            s.push(' ');
        }
        if let Some(c) = r.comment {
            let _ = write!(s, "comment \"{c}\"");
        }
        s.truncate(s.trim_end().len());
        s
    }

    pub fn key(self, k: &Key) -> String {
        match k {
            Key::AddrProtoPort(a, p, port) => format!("{a} . {} . {port}", p.nft()),
            Key::ProtoPort(p, port) => format!("{} . {port}", p.nft()),
        }
    }

    pub fn verdict(self, v: &Verdict) -> String {
        match v {
            Verdict::Goto(c) => format!("goto {c}"),
            Verdict::Drop => "drop".to_string(),
        }
    }

    /// One step as an `nft -f` line (or lines).
    pub fn op(self, table: &str, op: &Op) -> String {
        let fam = self.nft_family();
        match op {
            Op::RecreateTable => format!(
                "add table {fam} {table}\ndelete table {fam} {table}\nadd table {fam} {table} {{ comment \"rules for kubesvc\" ; }}"
            ),
            Op::AddChain { name, base: Some(b) } => format!("add chain {fam} {table} {name} {}", self.base_chain(b)),
            Op::AddChain { name, base: None } => format!("add chain {fam} {table} {name}"),
            Op::FlushChain(name) => format!("flush chain {fam} {table} {name}"),
            Op::DeleteChain(name) => format!("delete chain {fam} {table} {name}"),
            Op::AddRule { chain, rule } => format!("add rule {fam} {table} {chain} {}", self.rule(rule)),
            Op::AddMap { name, kind } => format!("add map {fam} {table} {name} {{ type {} ; }}", self.map_type(*kind)),
            Op::AddSet { name, timeout: None } => {
                format!("add set {fam} {table} {name} {{ type {} ; }}", self.addr_type())
            }
            Op::AddSet { name, timeout: Some(t) } => format!(
                "add set {fam} {table} {name} {{ type {} ; flags dynamic,timeout ; timeout {t}s ; }}",
                self.addr_type()
            ),
            Op::DeleteSet(name) => format!("delete set {fam} {table} {name}"),
            Op::AddElement { map, key, verdict } => {
                format!("add element {fam} {table} {map} {{ {} : {} }}", self.key(key), self.verdict(verdict))
            }
            Op::DeleteElement { map, key } => format!("delete element {fam} {table} {map} {{ {} }}", self.key(key)),
            Op::AddSetElement { set, addr } => format!("add element {fam} {table} {set} {{ {addr} }}"),
            Op::DeleteSetElement { set, addr } => format!("delete element {fam} {table} {set} {{ {addr} }}"),
        }
    }

    pub fn base_chain(self, b: &BaseChain) -> String {
        let ty = match b.ty {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        };
        format!("{{ type {ty} hook {} priority {} ; }}", b.hook.as_str(), b.priority)
    }
}

/// A whole table as data: what the tracer walks.
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    pub base: BTreeMap<String, BaseChain>,
    pub chains: BTreeMap<String, Vec<Rule>>,
    pub maps: BTreeMap<String, BTreeMap<Key, Verdict>>,
    pub sets: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Dynamic sets with their timeouts (affinity).
    pub dynamic_sets: BTreeMap<String, u32>,
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, rules) in &self.chains {
            writeln!(f, "chain {name} {{")?;
            for r in rules {
                writeln!(f, "  {}", Syntax { family: Family::IPv4 }.rule(r))?;
            }
            writeln!(f, "}}")?;
        }
        for (name, elems) in &self.maps {
            writeln!(f, "map {name}: {} elements", elems.len())?;
        }
        Ok(())
    }
}
