//! A packet tracer over a rendered [`Ruleset`]: where a packet from a given
//! source to a given destination lands (accepted, DNAT'd to which endpoints,
//! masqueraded or not, rejected, dropped), walking the base chains in hook and
//! priority order as the kernel does. Tests of the proxy ask it about
//! behaviour instead of comparing rule text, as Kubernetes' nftables proxier
//! tests do with theirs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::model::Protocol;
use crate::nft::ir::{Hook, Key, Match, Ruleset, Stmt, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    Accept,
    Drop,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Protocol,
    pub dport: u16,
    /// Sent by the node itself (the output path); otherwise it arrives from outside or a pod.
    pub from_node: bool,
}

/// Where one possible path of a packet ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Outcome {
    pub fate: Fate,
    pub dnat: Option<SocketAddr>,
    pub masquerade: bool,
    /// Dynamic sets the path added the source to (session affinity).
    pub updated_sets: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct State {
    dst: IpAddr,
    dport: u16,
    mark: u32,
    dnat: Option<SocketAddr>,
    masquerade: bool,
    updated: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// The chain ran off its end, or returned.
    Continue,
    Final(Fate),
}

pub struct Tracer<'a> {
    rs: &'a Ruleset,
    /// The node's own addresses (`fib ... type local`).
    pub local_addrs: Vec<IpAddr>,
    /// Dynamic set entries present before the packet (e.g. an affinity from an earlier one).
    pub dynamic: BTreeSet<(String, IpAddr)>,
}

impl<'a> Tracer<'a> {
    pub fn new(rs: &'a Ruleset, local_addrs: Vec<IpAddr>) -> Tracer<'a> {
        Tracer { rs, local_addrs, dynamic: BTreeSet::new() }
    }

    /// Every way `p` can go (one per random choice on its path), without duplicates.
    pub fn trace(&self, p: &Packet) -> Vec<Outcome> {
        let st = State { dst: p.dst, dport: p.dport, mark: 0, dnat: None, masquerade: false, updated: BTreeSet::new() };
        let hooks: &[Hook] = if p.from_node { &[Hook::Output] } else { &[Hook::Prerouting] };
        let mut out = BTreeSet::new();
        for (st, fate) in self.hooks(p, hooks, st) {
            if fate != Fate::Accept {
                out.insert(Outcome { fate, dnat: st.dnat, masquerade: false, updated_sets: st.updated });
                continue;
            }
            // Routing: after prerouting, local destinations go to input, the rest are forwarded.
            // The node's own packets to itself go out and in again over loopback (NAT already
            // decided at output, so only input's filter chains see them).
            let local = self.local_addrs.contains(&st.dst);
            let next: &[Hook] = if p.from_node && local {
                &[Hook::Postrouting, Hook::Input]
            } else if p.from_node {
                &[Hook::Postrouting]
            } else if local {
                &[Hook::Input]
            } else {
                &[Hook::Forward, Hook::Postrouting]
            };
            for (st, fate) in self.hooks(p, next, st) {
                out.insert(Outcome { fate, dnat: st.dnat, masquerade: st.masquerade, updated_sets: st.updated });
            }
        }
        out.into_iter().collect()
    }

    fn hooks(&self, p: &Packet, hooks: &[Hook], st: State) -> Vec<(State, Fate)> {
        let mut chains: Vec<(usize, i32, &String)> = Vec::new();
        for (name, b) in &self.rs.base {
            if let Some(i) = hooks.iter().position(|h| *h == b.hook) {
                chains.push((i, b.priority, name));
            }
        }
        chains.sort();
        let mut alive = vec![st];
        let mut done = Vec::new();
        for (_, _, name) in chains {
            let mut next = Vec::new();
            for st in alive {
                for (st, flow) in self.chain(p, name, st, 0) {
                    match flow {
                        Flow::Continue | Flow::Final(Fate::Accept) => next.push(st),
                        Flow::Final(f) => done.push((st, f)),
                    }
                }
            }
            alive = next;
        }
        done.extend(alive.into_iter().map(|s| (s, Fate::Accept)));
        done
    }

    fn chain(&self, p: &Packet, name: &str, st: State, depth: usize) -> Vec<(State, Flow)> {
        let Some(rules) = self.rs.chains.get(name) else {
            panic!("a rule refers to chain {name}, which does not exist");
        };
        assert!(depth < 32, "chain {name}: jumps nest too deep (a loop?)");
        self.rules(p, rules, 0, st, depth)
    }

    fn rules(
        &self,
        p: &Packet,
        rules: &[crate::nft::ir::Rule],
        i: usize,
        st: State,
        depth: usize,
    ) -> Vec<(State, Flow)> {
        let Some(r) = rules.get(i) else { return vec![(st, Flow::Continue)] };
        if !r.matches.iter().all(|m| self.matches(p, m, &st)) {
            return self.rules(p, rules, i + 1, st, depth);
        }
        // A random match goes both ways: every path is followed.
        if r.matches.iter().any(|m| matches!(m, Match::NumgenOneIn(_))) {
            let mut out = self.stmts(p, rules, i, 0, st.clone(), depth);
            out.extend(self.rules(p, rules, i + 1, st, depth));
            return out;
        }
        self.stmts(p, rules, i, 0, st, depth)
    }

    fn stmts(
        &self,
        p: &Packet,
        rules: &[crate::nft::ir::Rule],
        i: usize,
        j: usize,
        mut st: State,
        depth: usize,
    ) -> Vec<(State, Flow)> {
        let Some(stmt) = rules[i].stmts.get(j) else { return self.rules(p, rules, i + 1, st, depth) };
        let goto = |c: &str, st: State| -> Vec<(State, Flow)> {
            // A goto does not come back: when the target ends, so does this chain.
            self.chain(p, c, st, depth + 1)
                .into_iter()
                .map(|(s, f)| (s, if let Flow::Final(_) = f { f } else { Flow::Continue }))
                .collect()
        };
        let verdict = |v: Option<&Verdict>, st: State| -> Vec<(State, Flow)> {
            match v {
                None => self.rules(p, rules, i + 1, st, depth),
                Some(Verdict::Drop) => vec![(st, Flow::Final(Fate::Drop))],
                Some(Verdict::Goto(c)) => goto(c, st),
            }
        };
        match stmt {
            Stmt::Jump(c) => {
                let mut out = Vec::new();
                for (s, f) in self.chain(p, c, st, depth + 1) {
                    match f {
                        Flow::Final(_) => out.push((s, f)),
                        Flow::Continue => out.extend(self.stmts(p, rules, i, j + 1, s, depth)),
                    }
                }
                out
            }
            Stmt::Goto(c) => goto(c, st),
            Stmt::Return => vec![(st, Flow::Continue)],
            Stmt::Drop => vec![(st, Flow::Final(Fate::Drop))],
            Stmt::Reject => vec![(st, Flow::Final(Fate::Reject))],
            Stmt::VmapAddrProtoPort(m) => {
                let key = Key::AddrProtoPort(st.dst, p.proto, st.dport);
                let v = self.rs.maps.get(m).and_then(|m| m.get(&key)).cloned();
                verdict(v.as_ref(), st)
            }
            Stmt::VmapProtoPort(m) => {
                let key = Key::ProtoPort(p.proto, st.dport);
                let v = self.rs.maps.get(m).and_then(|m| m.get(&key)).cloned();
                verdict(v.as_ref(), st)
            }
            Stmt::MarkOr(m) => {
                st.mark |= m;
                self.stmts(p, rules, i, j + 1, st, depth)
            }
            Stmt::MarkXor(m) => {
                st.mark ^= m;
                self.stmts(p, rules, i, j + 1, st, depth)
            }
            Stmt::Masquerade { .. } => {
                st.masquerade = true;
                vec![(st, Flow::Final(Fate::Accept))]
            }
            Stmt::UpdateSaddr(set) => {
                st.updated.insert(set.clone());
                self.stmts(p, rules, i, j + 1, st, depth)
            }
            Stmt::Dnat(proto, to) => {
                if *proto != p.proto {
                    return self.rules(p, rules, i + 1, st, depth);
                }
                st.dst = to.ip();
                st.dport = to.port();
                st.dnat = Some(*to);
                vec![(st, Flow::Final(Fate::Accept))]
            }
        }
    }

    fn matches(&self, p: &Packet, m: &Match, st: &State) -> bool {
        match m {
            Match::Saddr { negated, cidr } => cidr.contains(&p.src) != *negated,
            Match::SaddrIs(a) => p.src == *a,
            Match::SaddrInSet(set) => {
                self.rs.sets.get(set).is_some_and(|s| s.contains(&p.src))
                    || self.dynamic.contains(&(set.clone(), p.src))
            }
            Match::DaddrIs(a) => st.dst == *a,
            Match::Daddr { negated, cidr } => cidr.contains(&st.dst) != *negated,
            Match::DaddrInSet(set) => self.rs.sets.get(set).is_some_and(|s| s.contains(&st.dst)),
            Match::Dport(proto, port) => p.proto == *proto && st.dport == *port,
            Match::L4Proto(proto) => p.proto == *proto,
            Match::FibSaddrLocal => self.local_addrs.contains(&p.src),
            Match::FibDaddrLocal => self.local_addrs.contains(&st.dst),
            Match::CtStateNew => true,
            Match::MarkClear(m) => st.mark & m == 0,
            Match::NumgenOneIn(_) => true,
        }
    }
}
