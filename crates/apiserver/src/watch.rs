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
use crate::cache::{CacheEvent, Entry, EventType, WatchError, WatchStart};
use crate::list::{Filter, too_large};
use crate::output::{self, IncludeObject};
use crate::registry::CACHE_WAIT;
use crate::web::{Body, Format, JSON, Negotiated, Query, ResourcePath};

/// How often bookmarks go out to watchers that asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

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
    let initial = send_initial.unwrap_or(rv.is_empty() || rv == "0");
    let start = if initial {
        if rv.is_empty() && send_initial == Some(true) {
            state.registry.consistent().await?;
        }
        WatchStart::Initial
    } else {
        let want: i64 =
            rv.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if !state.registry.cache.wait_for(want, CACHE_WAIT).await {
            return Err(too_large(want, state.registry.cache.rv()));
        }
        WatchStart::After(want)
    };

    let mut framer = Framer { r, n, include, first: true };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let sub = match rc.subscribe(start) {
        Ok(s) => Some(s),
        Err(WatchError::TooOld(want, oldest)) => {
            // Too old: a 200 whose one event says so, as Kubernetes answers.
            let e = StatusError::expired(format!("too old resource version: {want} ({oldest})"));
            let _ = tx.try_send(framer.error(&e));
            None
        }
    };
    if let Some(sub) = sub {
        let mut shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let mut last_rv = sub.rv;
            for ev in &sub.backlog {
                if let Some(ty) = visible(&filter, ev)
                    && tx.send(framer.event(ty, &ev.obj)).await.is_err()
                {
                    return;
                }
            }
            if send_initial == Some(true) && bookmarks && tx.send(framer.bookmark(sub.rv, true)).await.is_err() {
                return;
            }
            let mut live = sub.live;
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(ev) => {
                            if ev.rv <= sub.rv {
                                continue; // Already in the backlog.
                            }
                            last_rv = ev.rv;
                            if let Some(ty) = visible(&filter, &ev)
                                && tx.send(framer.event(ty, &ev.obj)).await.is_err()
                            {
                                return;
                            }
                        }
                        // Too slow to keep up: end the watch; the client resumes from its last resourceVersion.
                        Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        let rv = rc.rv().max(last_rv);
                        if tx.send(framer.bookmark(rv, false)).await.is_err() {
                            return;
                        }
                    }
                    _ = &mut deadline => return,
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                }
            }
        });
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
