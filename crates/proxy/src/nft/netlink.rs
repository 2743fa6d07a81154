//! Applying a transaction over netlink: a [`Plan`]'s operations encoded as the
//! nf_tables messages `nft -f` would send for the same text, written to the
//! kernel as one batch (atomic, as `nft -f` is) on a socket kept open. Unlike
//! `nft`, nothing is dumped from the kernel first, so a small change costs
//! about as much as its messages, however big the table is.
//!
//! Encodings follow nft 1.0.6 expression by expression (the same registers,
//! lengths, byte orders and userdata), so `nft list table` prints a table
//! written either way alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use kubesvc_api::net::{Cidr, Family};
use kubesvc_host::nfnetlink::{BatchError, Msg, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, Socket};
use parking_lot::Mutex;

use super::Plan;
use super::ir::{BaseChain, ChainType, Hook, Key, MapKind, Match, Op, Rule, Stmt, Verdict};
use crate::model::Protocol;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot encode `{op}`: {reason}")]
    Encode { op: String, reason: &'static str },
    /// The kernel refused the transaction (and applied none of it); `op` is the text of
    /// the first operation it refused, `index` that operation's place in the plan.
    #[error("the kernel refused `{op}`: {}", refusal(source))]
    Refused {
        op: String,
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("nf_tables over netlink: {0}")]
    Netlink(#[source] BatchError),
    #[error("the netlink task failed: {0}")]
    Task(String),
}

fn refusal(e: &BatchError) -> String {
    match e {
        BatchError::Refused { errno, errors, .. } if *errors > 1 => {
            format!("{errno} (and {} more refused after it)", errors - 1)
        }
        BatchError::Refused { errno, .. } => errno.to_string(),
        other => other.to_string(),
    }
}

impl NetlinkError {
    /// The kernel's error number, when it refused something (e.g. ENOENT, EEXIST, EBUSY).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Refused { source, .. } | NetlinkError::Netlink(source) => source.errno().map(|e| e as i32),
            _ => None,
        }
    }
}

/// Applies plans over one NETLINK_NETFILTER socket, opened once and reused.
#[derive(Clone, Debug)]
pub struct Netlink {
    socket: Arc<Mutex<Socket>>,
}

impl Netlink {
    /// A socket in the namespace this thread runs in (the process's, for the proxy).
    pub fn open() -> Result<Netlink, NetlinkError> {
        Ok(Netlink { socket: Arc::new(Mutex::new(Socket::open().map_err(NetlinkError::Netlink)?)) })
    }

    /// A socket in the network namespace `netns` refers to (`/proc/PID/ns/net`, `/run/netns/NAME`).
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink, NetlinkError> {
        Ok(Netlink { socket: Arc::new(Mutex::new(Socket::open_in(netns).map_err(NetlinkError::Netlink)?)) })
    }

    /// Applies one transaction: all of it, or (refused) none of it.
    pub async fn apply(&self, plan: &Plan) -> Result<(), NetlinkError> {
        if plan.ops.is_empty() {
            return Ok(());
        }
        let Encoded { msgs, origin } = encode(plan)?;
        self.send(msgs).await?.map_err(|e| match (&e, e.index().and_then(|i| origin.get(i))) {
            (BatchError::Refused { .. }, Some(&(index, line))) => {
                let text = plan.syntax().op(plan.table(), &plan.ops[index]);
                let op = text.lines().nth(line).unwrap_or(&text).to_string();
                NetlinkError::Refused { op, index, source: e }
            }
            _ => NetlinkError::Netlink(e),
        })
    }
}

impl Netlink {
    /// Whether nf_tables takes a transaction here: a probe table added and deleted in
    /// one batch (so the kernel ends as it was).
    pub async fn check(&self) -> Result<(), NetlinkError> {
        self.raw(vec![
            table_msg(NEWTABLE, Family::IPv4, "kubesvc-probe"),
            table_msg(DELTABLE, Family::IPv4, "kubesvc-probe"),
        ])
        .await
    }

    /// Removes `family`'s table `name`, if there is one.
    pub async fn remove_table(&self, family: Family, name: &str) -> Result<(), NetlinkError> {
        self.raw(vec![table_msg(NEWTABLE, family, name), table_msg(DELTABLE, family, name)]).await
    }

    async fn raw(&self, msgs: Vec<Msg>) -> Result<(), NetlinkError> {
        self.send(msgs).await?.map_err(NetlinkError::Netlink)
    }

    /// Sends one batch off the async threads (the kernel answers within the call).
    async fn send(&self, msgs: Vec<Msg>) -> Result<Result<(), BatchError>, NetlinkError> {
        let socket = self.socket.clone();
        tokio::task::spawn_blocking(move || socket.lock().batch(&msgs))
            .await
            .map_err(|e| NetlinkError::Task(e.to_string()))
    }
}

/// nf_tables' number for a family.
fn nfproto(family: Family) -> u8 {
    match family {
        Family::IPv4 => NFPROTO_IPV4,
        Family::IPv6 => NFPROTO_IPV6,
    }
}

/// A table message with nothing but the table's name (adding one that is there changes nothing).
fn table_msg(msg: u8, family: Family, name: &str) -> Msg {
    let mut m = Msg::nftables(msg, NLM_F_REQUEST | if msg == NEWTABLE { NLM_F_CREATE } else { 0 }, nfproto(family));
    m.str(NFTA_TABLE_NAME, name);
    m
}

/// A plan as messages; `origin[i]` is message i's operation in the plan and which of
/// the operation's `nft` lines it is (one operation may take several messages).
pub struct Encoded {
    pub msgs: Vec<Msg>,
    pub origin: Vec<(usize, usize)>,
}

/// Encodes a plan's operations for its family and table.
pub fn encode(plan: &Plan) -> Result<Encoded, NetlinkError> {
    let mut enc = Encoder {
        family: plan.syntax().family,
        table: plan.table(),
        set_ids: HashMap::new(),
        next_id: 0,
        out: Encoded { msgs: Vec::with_capacity(plan.ops.len() + 2), origin: Vec::with_capacity(plan.ops.len() + 2) },
    };
    for (i, op) in plan.ops.iter().enumerate() {
        enc.op(i, op).map_err(|reason| NetlinkError::Encode { op: plan.syntax().op(plan.table(), op), reason })?;
    }
    Ok(enc.out)
}

// Message types (enum nf_tables_msg_types).
const NEWTABLE: u8 = 0;
const DELTABLE: u8 = 2;
const NEWCHAIN: u8 = 3;
const DELCHAIN: u8 = 5;
const NEWRULE: u8 = 6;
const DELRULE: u8 = 8;
const NEWSET: u8 = 9;
const DELSET: u8 = 11;
const NEWSETELEM: u8 = 12;
const DELSETELEM: u8 = 14;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// Expression attributes, by expression.
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFTA_NG_OFFSET: u16 = 4;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_FLAGS: u16 = 7;
const NFTA_MASQ_FLAGS: u16 = 1;

// Values.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_REG32_00: u32 = 8;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
const NF_DROP: i32 = 0;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NF_CT_STATE_NEW: u32 = 1 << 3;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;
const NFT_NG_RANDOM: u32 = 1;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_REJECT_ICMP_UNREACH: u32 = 0;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMPV6_PORT_UNREACH: u8 = 4;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 1 << 1;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 1 << 4;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
// nft's datatype ids, as set key types.
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
// nft's userdata (libnftnl's TLVs: type, length, value; no padding).
const UDATA_COMMENT: u8 = 0;
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_KEY_TYPEOF: u8 = 3;
const UDATA_SET_DATA_INTERVAL: u8 = 6;
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// nft's expression type id of a concatenation (a map key's "typeof").
const EXPR_CONCAT: u32 = 13;

/// The table's comment, as `ir::Syntax::op` writes it for `Op::RecreateTable`.
const TABLE_COMMENT: &str = "rules for kubesvc";

fn udata_u32(out: &mut Vec<u8>, ty: u8, v: u32) {
    out.extend_from_slice(&[ty, 4]);
    out.extend_from_slice(&v.to_ne_bytes());
}

fn udata_comment(c: &str) -> Result<Vec<u8>, &'static str> {
    let len = u8::try_from(c.len() + 1).map_err(|_| "a comment over 254 bytes")?;
    let mut out = vec![UDATA_COMMENT, len];
    out.extend_from_slice(c.as_bytes());
    out.push(0);
    Ok(out)
}

/// What nft 1.0.6 writes for a map declared by `type a . b : verdict`: no byte order for
/// key or data (a concatenation has none), the key's typeof as a concatenation with no
/// fields (so listings fall back to the key type), data not an interval.
fn map_udata() -> Vec<u8> {
    let mut out = Vec::new();
    udata_u32(&mut out, UDATA_SET_KEYBYTEORDER, 0);
    udata_u32(&mut out, UDATA_SET_DATABYTEORDER, 0);
    let mut typeof_ = Vec::new();
    udata_u32(&mut typeof_, 0, EXPR_CONCAT);
    typeof_.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&[UDATA_SET_KEY_TYPEOF, typeof_.len() as u8]);
    out.extend_from_slice(&typeof_);
    udata_u32(&mut out, UDATA_SET_DATA_INTERVAL, 0);
    out
}

/// nft's register numbering: a 32-bit register at a 16-byte boundary is sent as the
/// 128-bit register there (NFT_REG_1 for the first), any other as NFT_REG32_nn.
fn reg32(index: u32) -> u32 {
    if index.is_multiple_of(4) { NFT_REG_1 + index / 4 } else { NFT_REG32_00 + index }
}

fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn hooknum(h: Hook) -> u32 {
    match h {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}

/// One expression of a rule, with what it needs (source registers are always NFT_REG_1,
/// as nft's are for every expression here).
enum Expr<'a> {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    /// `with_op`: nft sends NFTA_BITWISE_OP for mark arithmetic but not for prefix or
    /// flag masks.
    Bitwise {
        mask: Vec<u8>,
        xor: Vec<u8>,
        with_op: bool,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    MetaSet {
        key: u32,
    },
    Ct {
        key: u32,
    },
    Value {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict {
        code: i32,
        chain: Option<&'a str>,
    },
    Lookup {
        set: &'a str,
        dreg: Option<u32>,
    },
    DynsetUpdate {
        set: &'a str,
    },
    Fib {
        flags: u32,
    },
    Numgen {
        modulus: u32,
    },
    Reject {
        code: u8,
    },
    Dnat {
        family: u8,
    },
    Masq {
        flags: Option<u32>,
    },
}

impl Expr<'_> {
    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Value { .. } | Expr::Verdict { .. } => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::DynsetUpdate { .. } => "dynset",
            Expr::Fib { .. } => "fib",
            Expr::Numgen { .. } => "numgen",
            Expr::Reject { .. } => "reject",
            Expr::Dnat { .. } => "nat",
            Expr::Masq { .. } => "masq",
        }
    }
}

fn verdict(m: &mut Msg, code: i32, chain: Option<&str>) {
    m.nested(NFTA_DATA_VERDICT, |m| {
        m.u32(NFTA_VERDICT_CODE, code as u32);
        if let Some(c) = chain {
            m.str(NFTA_VERDICT_CHAIN, c);
        }
    });
}

struct Encoder<'a> {
    family: Family,
    table: &'a str,
    /// Sets and maps created in this batch, with the ids references to them carry.
    set_ids: HashMap<String, u32>,
    next_id: u32,
    out: Encoded,
}

impl<'a> Encoder<'a> {
    fn nfproto(&self) -> u8 {
        nfproto(self.family)
    }

    fn addr_len(&self) -> u32 {
        match self.family {
            Family::IPv4 => 4,
            Family::IPv6 => 16,
        }
    }

    fn addr_type(&self) -> u32 {
        match self.family {
            Family::IPv4 => TYPE_IPV4_ADDR,
            Family::IPv6 => TYPE_IPV6_ADDR,
        }
    }

    fn addr(&self, ip: &IpAddr) -> Result<Vec<u8>, &'static str> {
        match (self.family, ip) {
            (Family::IPv4, IpAddr::V4(a)) => Ok(a.octets().to_vec()),
            (Family::IPv6, IpAddr::V6(a)) => Ok(a.octets().to_vec()),
            _ => Err("an address of the other family"),
        }
    }

    /// Where `ip saddr` / `ip daddr` (or ip6's) sit in the network header.
    fn addr_offset(&self, src: bool) -> u32 {
        match (self.family, src) {
            (Family::IPv4, true) => 12,
            (Family::IPv4, false) => 16,
            (Family::IPv6, true) => 8,
            (Family::IPv6, false) => 24,
        }
    }

    fn msg(&mut self, ty: u8, flags: u16, origin: (usize, usize)) -> &mut Msg {
        self.out.msgs.push(Msg::nftables(ty, NLM_F_REQUEST | flags, self.nfproto()));
        self.out.origin.push(origin);
        let last = self.out.msgs.len() - 1;
        &mut self.out.msgs[last]
    }

    fn op(&mut self, i: usize, op: &'a Op) -> Result<(), &'static str> {
        let table = self.table;
        match op {
            Op::RecreateTable => {
                // nft's `add table` sends NEWTABLE without NLM_F_CREATE (creating needs no flag).
                self.msg(NEWTABLE, 0, (i, 0)).str(NFTA_TABLE_NAME, table).u32(NFTA_TABLE_FLAGS, 0);
                self.msg(DELTABLE, 0, (i, 1)).str(NFTA_TABLE_NAME, table);
                self.set_ids.clear();
                let comment = udata_comment(TABLE_COMMENT)?;
                self.msg(NEWTABLE, 0, (i, 2))
                    .str(NFTA_TABLE_NAME, table)
                    .u32(NFTA_TABLE_FLAGS, 0)
                    .bytes(NFTA_TABLE_USERDATA, &comment);
            }
            Op::AddChain { name, base } => {
                let m = self.msg(NEWCHAIN, NLM_F_CREATE, (i, 0));
                m.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, name);
                if let Some(BaseChain { ty, hook, priority }) = base {
                    m.str(
                        NFTA_CHAIN_TYPE,
                        match ty {
                            ChainType::Filter => "filter",
                            ChainType::Nat => "nat",
                        },
                    );
                    m.nested(NFTA_CHAIN_HOOK, |m| {
                        m.u32(NFTA_HOOK_HOOKNUM, hooknum(*hook)).u32(NFTA_HOOK_PRIORITY, *priority as u32);
                    });
                }
            }
            Op::FlushChain(name) => {
                self.msg(DELRULE, 0, (i, 0)).str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, name);
            }
            Op::DeleteChain(name) => {
                self.msg(DELCHAIN, 0, (i, 0)).str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, name);
            }
            Op::AddRule { chain, rule } => {
                let exprs = self.exprs(rule)?;
                let comment = rule.comment.map(udata_comment).transpose()?;
                let ids = &self.set_ids;
                let mut m = Msg::nftables(NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND, self.nfproto());
                m.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
                m.nested(NFTA_RULE_EXPRESSIONS, |m| {
                    for e in &exprs {
                        m.nested(NFTA_LIST_ELEM, |m| {
                            m.str(NFTA_EXPR_NAME, e.name());
                            m.nested(NFTA_EXPR_DATA, |m| put_expr(m, e, ids));
                        });
                    }
                });
                if let Some(c) = comment {
                    m.bytes(NFTA_RULE_USERDATA, &c);
                }
                self.out.msgs.push(m);
                self.out.origin.push((i, 0));
            }
            Op::AddMap { name, kind } => {
                let (key_type, key_len) = match kind {
                    MapKind::AddrProtoPort => {
                        ((self.addr_type() << 6 | TYPE_INET_PROTO) << 6 | TYPE_INET_SERVICE, self.addr_len() + 8)
                    }
                    MapKind::ProtoPort => (TYPE_INET_PROTO << 6 | TYPE_INET_SERVICE, 8),
                };
                let id = self.new_set(name);
                self.msg(NEWSET, NLM_F_CREATE, (i, 0))
                    .str(NFTA_SET_TABLE, table)
                    .str(NFTA_SET_NAME, name)
                    .u32(NFTA_SET_FLAGS, NFT_SET_MAP)
                    .u32(NFTA_SET_KEY_TYPE, key_type)
                    .u32(NFTA_SET_KEY_LEN, key_len)
                    .u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
                    .u32(NFTA_SET_DATA_LEN, 0)
                    .u32(NFTA_SET_ID, id)
                    .bytes(NFTA_SET_USERDATA, &map_udata());
            }
            Op::AddSet { name, timeout } => {
                let (key_type, key_len) = (self.addr_type(), self.addr_len());
                let id = self.new_set(name);
                let mut udata = Vec::new();
                udata_u32(&mut udata, UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG_ENDIAN);
                let flags = if timeout.is_some() { NFT_SET_TIMEOUT | NFT_SET_EVAL } else { 0 };
                let m = self.msg(NEWSET, NLM_F_CREATE, (i, 0));
                m.str(NFTA_SET_TABLE, table)
                    .str(NFTA_SET_NAME, name)
                    .u32(NFTA_SET_FLAGS, flags)
                    .u32(NFTA_SET_KEY_TYPE, key_type)
                    .u32(NFTA_SET_KEY_LEN, key_len)
                    .u32(NFTA_SET_ID, id);
                if let Some(t) = timeout {
                    m.u64(NFTA_SET_TIMEOUT, u64::from(*t) * 1000);
                }
                m.bytes(NFTA_SET_USERDATA, &udata);
            }
            Op::DeleteSet(name) => {
                self.set_ids.remove(name);
                self.msg(DELSET, 0, (i, 0)).str(NFTA_SET_TABLE, table).str(NFTA_SET_NAME, name);
            }
            Op::AddElement { map, key, verdict: v } => {
                let key = self.key(key)?;
                let (code, chain) = match v {
                    Verdict::Goto(c) => (NFT_GOTO, Some(c.as_str())),
                    Verdict::Drop => (NF_DROP, None),
                };
                self.element(NEWSETELEM, i, map, &key, Some((code, chain)));
            }
            Op::DeleteElement { map, key } => {
                let key = self.key(key)?;
                self.element(DELSETELEM, i, map, &key, None);
            }
            Op::AddSetElement { set, addr } => {
                let key = self.addr(addr)?;
                self.element(NEWSETELEM, i, set, &key, None);
            }
            Op::DeleteSetElement { set, addr } => {
                let key = self.addr(addr)?;
                self.element(DELSETELEM, i, set, &key, None);
            }
        }
        Ok(())
    }

    fn new_set(&mut self, name: &str) -> u32 {
        self.next_id += 1;
        self.set_ids.insert(name.to_string(), self.next_id);
        self.next_id
    }

    /// A map key as the kernel stores it: each field in 32-bit registers (padded with zeros).
    fn key(&self, k: &Key) -> Result<Vec<u8>, &'static str> {
        let (mut out, proto, port) = match k {
            Key::AddrProtoPort(ip, p, port) => (self.addr(ip)?, *p, *port),
            Key::ProtoPort(p, port) => (Vec::new(), *p, *port),
        };
        out.extend_from_slice(&[proto_num(proto), 0, 0, 0]);
        out.extend_from_slice(&port.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        Ok(out)
    }

    fn element(&mut self, ty: u8, i: usize, set: &str, key: &[u8], data: Option<(i32, Option<&str>)>) {
        let table = self.table;
        // nft names the set by id too when adding to one declared in the same batch (not when deleting).
        let id = if ty == NEWSETELEM { self.set_ids.get(set).copied() } else { None };
        let flags = if ty == NEWSETELEM { NLM_F_CREATE } else { 0 };
        let m = self.msg(ty, flags, (i, 0));
        m.str(NFTA_SET_ELEM_LIST_TABLE, table).str(NFTA_SET_ELEM_LIST_SET, set);
        if let Some(id) = id {
            m.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
        }
        m.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
            m.nested(NFTA_LIST_ELEM, |m| {
                m.nested(NFTA_SET_ELEM_KEY, |m| {
                    m.bytes(NFTA_DATA_VALUE, key);
                });
                if let Some((code, chain)) = data {
                    m.nested(NFTA_SET_ELEM_DATA, |m| verdict(m, code, chain));
                }
            });
        });
    }

    fn load_addr(&self, src: bool, dreg: u32) -> Expr<'static> {
        Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset: self.addr_offset(src), len: self.addr_len(), dreg }
    }

    /// `ip saddr 10.0.0.0/8` as nft writes it: a whole-byte prefix loads and compares only
    /// its bytes, any other masks the whole address first; a full-length one is a plain compare.
    fn prefix(&self, out: &mut Vec<Expr<'a>>, src: bool, negated: bool, cidr: &Cidr) -> Result<(), &'static str> {
        let net = self.addr(&cidr.network)?;
        let bits = net.len() * 8;
        let prefix = usize::from(cidr.prefix);
        if prefix > bits {
            return Err("a prefix longer than the address");
        }
        let op = if negated { NFT_CMP_NEQ } else { NFT_CMP_EQ };
        let mask: Vec<u8> = (0..net.len())
            .map(|i| {
                let set = prefix.saturating_sub(i * 8).min(8);
                if set == 0 { 0 } else { 0xffu8 << (8 - set) }
            })
            .collect();
        let masked: Vec<u8> = net.iter().zip(&mask).map(|(a, m)| a & m).collect();
        if prefix == bits {
            out.push(self.load_addr(src, NFT_REG_1));
            out.push(Expr::Cmp { op, data: masked });
        } else if prefix > 0 && prefix.is_multiple_of(8) {
            let len = prefix / 8;
            out.push(Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: self.addr_offset(src),
                len: len as u32,
                dreg: NFT_REG_1,
            });
            out.push(Expr::Cmp { op, data: masked[..len].to_vec() });
        } else {
            out.push(self.load_addr(src, NFT_REG_1));
            out.push(Expr::Bitwise { mask, xor: vec![0; net.len()], with_op: false });
            out.push(Expr::Cmp { op, data: masked });
        }
        Ok(())
    }

    fn l4proto(out: &mut Vec<Expr<'a>>, p: Protocol) {
        out.push(Expr::Meta { key: NFT_META_L4PROTO, dreg: NFT_REG_1 });
        out.push(Expr::Cmp { op: NFT_CMP_EQ, data: vec![proto_num(p)] });
    }

    fn th_dport(dreg: u32) -> Expr<'static> {
        Expr::Payload { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2, dreg }
    }

    /// `meta mark set meta mark & mask ^ xor`.
    fn mark_set(out: &mut Vec<Expr<'a>>, mask: u32, xor: u32) {
        out.push(Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 });
        out.push(Expr::Bitwise { mask: mask.to_ne_bytes().to_vec(), xor: xor.to_ne_bytes().to_vec(), with_op: true });
        out.push(Expr::MetaSet { key: NFT_META_MARK });
    }

    fn exprs(&self, r: &'a Rule) -> Result<Vec<Expr<'a>>, &'static str> {
        let mut out = Vec::new();
        let zero = || 0u32.to_ne_bytes().to_vec();
        for m in &r.matches {
            match m {
                Match::Saddr { negated, cidr } => self.prefix(&mut out, true, *negated, cidr)?,
                Match::Daddr { negated, cidr } => self.prefix(&mut out, false, *negated, cidr)?,
                Match::SaddrIs(ip) | Match::DaddrIs(ip) => {
                    out.push(self.load_addr(matches!(m, Match::SaddrIs(_)), NFT_REG_1));
                    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: self.addr(ip)? });
                }
                Match::SaddrInSet(set) | Match::DaddrInSet(set) => {
                    out.push(self.load_addr(matches!(m, Match::SaddrInSet(_)), NFT_REG_1));
                    out.push(Expr::Lookup { set, dreg: None });
                }
                // `tcp dport 80`: the protocol dependency first, as nft adds it.
                Match::Dport(p, port) => {
                    Self::l4proto(&mut out, *p);
                    out.push(Self::th_dport(NFT_REG_1));
                    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: port.to_be_bytes().to_vec() });
                }
                Match::L4Proto(p) => Self::l4proto(&mut out, *p),
                Match::FibSaddrLocal | Match::FibDaddrLocal => {
                    let flags = if matches!(m, Match::FibSaddrLocal) { NFTA_FIB_F_SADDR } else { NFTA_FIB_F_DADDR };
                    out.push(Expr::Fib { flags });
                    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: RTN_LOCAL.to_ne_bytes().to_vec() });
                }
                Match::CtStateNew => {
                    out.push(Expr::Ct { key: NFT_CT_STATE });
                    out.push(Expr::Bitwise {
                        mask: NF_CT_STATE_NEW.to_ne_bytes().to_vec(),
                        xor: zero(),
                        with_op: false,
                    });
                    out.push(Expr::Cmp { op: NFT_CMP_NEQ, data: zero() });
                }
                Match::MarkClear(mark) => {
                    out.push(Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 });
                    out.push(Expr::Bitwise { mask: mark.to_ne_bytes().to_vec(), xor: zero(), with_op: true });
                    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: zero() });
                }
                Match::NumgenOneIn(n) => {
                    out.push(Expr::Numgen { modulus: *n });
                    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: zero() });
                }
            }
        }
        for s in &r.stmts {
            match s {
                Stmt::Jump(c) => out.push(Expr::Verdict { code: NFT_JUMP, chain: Some(c) }),
                Stmt::Goto(c) => out.push(Expr::Verdict { code: NFT_GOTO, chain: Some(c) }),
                Stmt::Return => out.push(Expr::Verdict { code: NFT_RETURN, chain: None }),
                Stmt::Drop => out.push(Expr::Verdict { code: NF_DROP, chain: None }),
                Stmt::Reject => out.push(Expr::Reject {
                    code: match self.family {
                        Family::IPv4 => ICMP_PORT_UNREACH,
                        Family::IPv6 => ICMPV6_PORT_UNREACH,
                    },
                }),
                // A concatenation: fields in consecutive 32-bit registers from the first.
                Stmt::VmapAddrProtoPort(map) => {
                    let words = self.addr_len() / 4;
                    out.push(self.load_addr(false, reg32(0)));
                    out.push(Expr::Meta { key: NFT_META_L4PROTO, dreg: reg32(words) });
                    out.push(Self::th_dport(reg32(words + 1)));
                    out.push(Expr::Lookup { set: map, dreg: Some(NFT_REG_VERDICT) });
                }
                Stmt::VmapProtoPort(map) => {
                    out.push(Expr::Meta { key: NFT_META_L4PROTO, dreg: reg32(0) });
                    out.push(Self::th_dport(reg32(1)));
                    out.push(Expr::Lookup { set: map, dreg: Some(NFT_REG_VERDICT) });
                }
                Stmt::MarkOr(mark) => Self::mark_set(&mut out, !mark, *mark),
                Stmt::MarkXor(mark) => Self::mark_set(&mut out, u32::MAX, *mark),
                Stmt::Masquerade { fully_random } => {
                    out.push(Expr::Masq { flags: fully_random.then_some(NF_NAT_RANGE_PROTO_RANDOM_FULLY) })
                }
                Stmt::UpdateSaddr(set) => {
                    out.push(self.load_addr(true, NFT_REG_1));
                    out.push(Expr::DynsetUpdate { set });
                }
                Stmt::Dnat(p, to) => {
                    Self::l4proto(&mut out, *p);
                    out.push(Expr::Value { dreg: NFT_REG_1, data: self.addr(&to.ip())? });
                    out.push(Expr::Value { dreg: NFT_REG_2, data: to.port().to_be_bytes().to_vec() });
                    out.push(Expr::Dnat { family: self.nfproto() });
                }
            }
        }
        Ok(out)
    }
}

fn put_expr(m: &mut Msg, e: &Expr<'_>, set_ids: &HashMap<String, u32>) {
    let value = |m: &mut Msg, ty: u16, data: &[u8]| {
        m.nested(ty, |m| {
            m.bytes(NFTA_DATA_VALUE, data);
        });
    };
    match e {
        Expr::Payload { base, offset, len, dreg } => {
            m.u32(NFTA_PAYLOAD_DREG, *dreg)
                .u32(NFTA_PAYLOAD_BASE, *base)
                .u32(NFTA_PAYLOAD_OFFSET, *offset)
                .u32(NFTA_PAYLOAD_LEN, *len);
        }
        Expr::Cmp { op, data } => {
            m.u32(NFTA_CMP_SREG, NFT_REG_1).u32(NFTA_CMP_OP, *op);
            value(m, NFTA_CMP_DATA, data);
        }
        Expr::Bitwise { mask, xor, with_op } => {
            m.u32(NFTA_BITWISE_SREG, NFT_REG_1).u32(NFTA_BITWISE_DREG, NFT_REG_1);
            if *with_op {
                m.u32(NFTA_BITWISE_OP, 0); // NFT_BITWISE_MASK_XOR
            }
            m.u32(NFTA_BITWISE_LEN, mask.len() as u32);
            value(m, NFTA_BITWISE_MASK, mask);
            value(m, NFTA_BITWISE_XOR, xor);
        }
        Expr::Meta { key, dreg } => {
            m.u32(NFTA_META_KEY, *key).u32(NFTA_META_DREG, *dreg);
        }
        Expr::MetaSet { key } => {
            m.u32(NFTA_META_KEY, *key).u32(NFTA_META_SREG, NFT_REG_1);
        }
        Expr::Ct { key } => {
            m.u32(NFTA_CT_KEY, *key).u32(NFTA_CT_DREG, NFT_REG_1);
        }
        Expr::Value { dreg, data } => {
            m.u32(NFTA_IMMEDIATE_DREG, *dreg);
            value(m, NFTA_IMMEDIATE_DATA, data);
        }
        Expr::Verdict { code, chain } => {
            m.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            m.nested(NFTA_IMMEDIATE_DATA, |m| verdict(m, *code, *chain));
        }
        Expr::Lookup { set, dreg } => {
            m.u32(NFTA_LOOKUP_SREG, NFT_REG_1);
            if let Some(d) = dreg {
                m.u32(NFTA_LOOKUP_DREG, *d);
            }
            m.str(NFTA_LOOKUP_SET, set);
            if let Some(id) = set_ids.get(*set) {
                m.u32(NFTA_LOOKUP_SET_ID, *id);
            }
        }
        Expr::DynsetUpdate { set } => {
            m.u32(NFTA_DYNSET_SREG_KEY, NFT_REG_1)
                .u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE)
                .str(NFTA_DYNSET_SET_NAME, set);
            if let Some(id) = set_ids.get(*set) {
                m.u32(NFTA_DYNSET_SET_ID, *id);
            }
        }
        Expr::Fib { flags } => {
            m.u32(NFTA_FIB_FLAGS, *flags).u32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE).u32(NFTA_FIB_DREG, NFT_REG_1);
        }
        Expr::Numgen { modulus } => {
            m.u32(NFTA_NG_DREG, NFT_REG_1)
                .u32(NFTA_NG_MODULUS, *modulus)
                .u32(NFTA_NG_TYPE, NFT_NG_RANDOM)
                .u32(NFTA_NG_OFFSET, 0);
        }
        Expr::Reject { code } => {
            m.u32(NFTA_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH).u8(NFTA_REJECT_ICMP_CODE, *code);
        }
        Expr::Dnat { family } => {
            m.u32(NFTA_NAT_TYPE, NFT_NAT_DNAT)
                .u32(NFTA_NAT_FAMILY, u32::from(*family))
                .u32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1)
                .u32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2)
                .u32(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
        }
        Expr::Masq { flags } => {
            if let Some(f) = flags {
                m.u32(NFTA_MASQ_FLAGS, *f);
            }
        }
    }
}
