//! WATCH: a stream of ADDED/MODIFIED/DELETED events from the watch cache, with
//! initial state, resumption from a resourceVersion, bookmarks, selectors
//! (an object leaving a selector is DELETED for that watcher), and framing as
//! newline-delimited JSON or length-prefixed protobuf.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use kubesvc_api::resources::Resource;
use kubesvc_api::status::{GroupKind, StatusError};
use kubesvc_api::validation::{ErrorList, FieldError};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::State;
use crate::cache::{CacheEvent, Entry, EventType, ResourceCache, Subscription, WatchError, WatchStart};
use crate::list::{Filter, too_large};
use crate::output::{self, IncludeObject};
use crate::registry::CACHE_WAIT;
use crate::web::{Body, Format, JSON, Negotiated, Query, ResourcePath};

fn invalid(err: FieldError) -> StatusError {
    let mut errs = ErrorList::new();
    errs.push(err);
    StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "ListOptions" }, "", &errs)
}

struct Framer {
    r: &'static Resource,
    n: Negotiated,
    include: IncludeObject,
    first: bool,
}

impl Framer {
    fn frame(&mut self, ty: &str, object: Bytes) -> Bytes {
        match self.n.format {
            Format::Protobuf => Bytes::from(kubesvc_wire::encode_watch_frame(ty, &object)),
            _ => {
                let mut b = BytesMut::with_capacity(object.len() + 32);
                b.put_slice(b"{\"type\":\"");
                b.put_slice(ty.as_bytes());
                b.put_slice(b"\",\"object\":");
                b.put_slice(&object);
                b.put_slice(b"}\n");
                b.freeze()
            }
        }
    }

    fn event(&mut self, ty: EventType, e: &Entry) -> Bytes {
        let obj = output::event_object(self.r, self.n, e, self.include, self.first);
        self.first = false;
        self.frame(ty.as_str(), obj)
    }

    fn bookmark(&mut self, rv: i64, initial_end: bool) -> Bytes {
        let mut obj = json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
        if initial_end {
            obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let bytes = match self.n.format {
            Format::Protobuf => kubesvc_wire::encode_object(&obj, self.r.schema(), &self.r.api_version(), self.r.kind),
            _ => serde_json::to_vec(&obj).expect("a JSON value serializes"),
        };
        self.frame("BOOKMARK", Bytes::from(bytes))
    }

    fn error(&mut self, e: &StatusError) -> Bytes {
        let v = e.to_json();
        let bytes = match self.n.format {
            Format::Protobuf => {
                let def = kubesvc_api::schema::def("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
                    .expect("Status is in the schema table");
                kubesvc_wire::encode_object(&v, def, "v1", "Status")
            }
            _ => serde_json::to_vec(&v).expect("a JSON value serializes"),
        };
        self.frame("ERROR", Bytes::from(bytes))
    }
}

/// What a watcher with `filter` sees of one event, if anything.
fn visible(filter: &Filter, ev: &CacheEvent) -> Option<EventType> {
    let now = filter.matches(&ev.obj);
    let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
    match ev.ty {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Deleted => before.then_some(EventType::Deleted),
        EventType::Modified => match (before, now) {
            (true, true) => Some(EventType::Modified),
            (true, false) => Some(EventType::Deleted),
            (false, true) => Some(EventType::Added),
            (false, false) => None,
        },
    }
}

pub async fn watch(
    state: &Arc<State>,
    rp: &ResourcePath,
    q: &Query,
    n: Negotiated,
) -> Result<Response<Body>, StatusError> {
    let r = rp.resource;
    if n.format == Format::Yaml {
        return Err(StatusError::not_acceptable(
            "only the following media types are accepted: application/json, application/vnd.kubernetes.protobuf",
        ));
    }
    let include = IncludeObject::parse(q.get("includeObject"))?;
    let mut filter = Filter::from_query(rp, q)?;
    if let Some(name) = &rp.name {
        match filter.fields.required("metadata.name") {
            Some(n) if n != name => {
                return Err(StatusError::bad_request("fieldSelector metadata.name doesn't match requested name"));
            }
            _ => filter.fields.terms.push(kubesvc_api::selector::FieldTerm {
                field: "metadata.name".into(),
                value: name.clone(),
                negated: false,
            }),
        }
    }
    let rv = q.get("resourceVersion").unwrap_or_default().to_string();
    let rvm = q.get("resourceVersionMatch").unwrap_or_default();
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
    let bookmarks = q.flag("allowWatchBookmarks");
    match send_initial {
        Some(_) if rvm != "NotOlderThan" => {
            return Err(invalid(FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )));
        }
        None if !rvm.is_empty() => {
            return Err(invalid(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )));
        }
        _ => {}
    }
    let timeout = match q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Kubernetes spreads watch lifetimes over 30 to 60 minutes.
        _ => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let rc = state.registry.cache.resource(r).clone();
    let requested: Option<i64> = match rv.as_str() {
        "" | "0" => None,
        v => Some(v.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {v:?}")))?),
    };
    if let Some(want) = requested
        && !state.registry.cache.wait_for(want, CACHE_WAIT).await
    {
        return Err(too_large(want, state.registry.cache.rv()));
    }
    let start = match (send_initial, requested) {
        // sendInitialEvents: the state (not older than any resourceVersion given), then changes.
        (Some(true), _) => {
            if rv.is_empty() {
                state.registry.consistent().await?;
            }
            WatchStart::Initial
        }
        // sendInitialEvents=false without a resourceVersion: changes from now on.
        (Some(false), None) => WatchStart::After(state.registry.consistent().await?.max(rc.rv())),
        (_, Some(want)) => WatchStart::After(want),
        (None, None) => WatchStart::Initial,
    };

    let mut framer = Framer { r, n, include, first: true };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    match rc.subscribe(start) {
        Ok(sub) => {
            let stream = Stream {
                tx,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                shutdown: state.shutdown.clone(),
                bookmark_every: state.bookmark_interval,
            };
            tokio::spawn(stream.run(sub, rc, filter, framer, send_initial == Some(true) && bookmarks, bookmarks));
        }
        Err(WatchError::TooOld(want, oldest)) => {
            // Too old: a 200 whose one event says so, as Kubernetes answers.
            let e = StatusError::expired(format!("too old resource version: {want} ({oldest})"));
            let _ = tx.try_send(framer.error(&e));
        }
    }
    let body = StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::OK;
    let ct = match n.format {
        Format::Protobuf => kubesvc_wire::WATCH_CONTENT_TYPE,
        _ => JSON,
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}

/// One watch's delivery: every send gives way to the deadline, shutdown and a
/// client that went away, so a client that stops reading cannot hold it open.
struct Stream {
    tx: mpsc::Sender<Bytes>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    bookmark_every: Duration,
}

impl Stream {
    async fn send(&mut self, frame: Bytes) -> bool {
        tokio::select! {
            r = self.tx.send(frame) => r.is_ok(),
            _ = &mut self.deadline => false,
            _ = self.shutdown.changed() => false,
        }
    }

    /// Sends `ev` if this watcher sees it; false when the watch is over.
    async fn event(&mut self, framer: &mut Framer, filter: &Filter, ev: &CacheEvent) -> bool {
        match visible(filter, ev) {
            None => true,
            // Leaving the selector: Kubernetes sends the last state the watcher could see.
            Some(EventType::Deleted) if ev.ty == EventType::Modified => {
                let prev = ev.prev.as_ref().expect("a modification has a previous state");
                let last = Entry::build(framer.r, prev.value(), ev.rv);
                let frame = framer.event(EventType::Deleted, &last);
                self.send(frame).await
            }
            Some(ty) => {
                let frame = framer.event(ty, &ev.obj);
                self.send(frame).await
            }
        }
    }

    async fn run(
        mut self,
        sub: Subscription,
        rc: Arc<ResourceCache>,
        filter: Filter,
        mut framer: Framer,
        initial_end: bool,
        bookmarks: bool,
    ) {
        for ev in &sub.backlog {
            if !self.event(&mut framer, &filter, ev).await {
                return;
            }
        }
        if initial_end && !self.send(framer.bookmark(sub.rv, true)).await {
            return;
        }
        let mut live = sub.live;
        let mut last_rv = sub.rv;
        // A live event read ahead while draining for a bookmark.
        let mut ahead: Option<Arc<CacheEvent>> = None;
        let every = self.bookmark_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let ev = match ahead.take() {
                Some(ev) => ev,
                None => tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(ev) => ev,
                        // Too slow to keep up, or the cache relisted: end the watch; the client resumes.
                        Err(_) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        // Every event up to the cache's revision is already queued: deliver those first,
                        // so no event ever follows a bookmark with a later resourceVersion.
                        let rv = rc.rv();
                        loop {
                            match live.try_recv() {
                                Ok(ev) if ev.rv > rv => {
                                    ahead = Some(ev);
                                    break;
                                }
                                Ok(ev) => {
                                    if ev.rv > sub.rv {
                                        last_rv = ev.rv;
                                        if !self.event(&mut framer, &filter, &ev).await {
                                            return;
                                        }
                                    }
                                }
                                Err(broadcast::error::TryRecvError::Empty) => break,
                                Err(_) => return,
                            }
                        }
                        if !self.send(framer.bookmark(rv.max(last_rv), false)).await {
                            return;
                        }
                        continue;
                    }
                    _ = &mut self.deadline => return,
                    _ = self.shutdown.changed() => return,
                    _ = self.tx.closed() => return,
                },
            };
            if ev.rv <= sub.rv {
                continue; // Already in the backlog.
            }
            last_rv = ev.rv;
            if !self.event(&mut framer, &filter, &ev).await {
                return;
            }
        }
    }
}
