//! Namespace lifecycle: the namespaces every cluster starts with, and the
//! controller that empties a terminating namespace, reports progress in its
//! conditions, and removes it once nothing is left.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kubesvc_api::meta;
use kubesvc_api::resources::{self, Resource, Subresource};
use kubesvc_api::wellknown::{
    FINALIZER_NAMESPACE as NAMESPACE_FINALIZER, LABEL_NAMESPACE_NAME as NAMESPACE_NAME_LABEL, NAMESPACE_NODE_LEASE,
};
use serde_json::{Value, json};

use crate::State;
use crate::registry::{DeleteOptions, FieldValidation, MutateOptions, Registry, WriteOptions};

/// How many objects a namespace's deletion removes at once (they share fsyncs).
const DELETE_CONCURRENCY: usize = 32;

pub const DEFAULT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", NAMESPACE_NODE_LEASE];

fn namespaces() -> &'static Resource {
    resources::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Creates the default namespaces that are missing.
pub async fn bootstrap(registry: &Registry) -> Result<(), kubesvc_api::status::StatusError> {
    let r = namespaces();
    for name in DEFAULT_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}}});
        let opts = WriteOptions { dry_run: false, field_validation: FieldValidation::Ignore };
        match registry.create(r, "", obj, opts).await {
            Ok(_) => tracing::info!(namespace = name, "created default namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Watches for terminating namespaces and finishes them.
pub fn spawn_controller(state: Arc<State>) {
    tokio::spawn(async move {
        let rc = state.registry.cache.resource(namespaces()).clone();
        let mut shutdown = state.shutdown.clone();
        loop {
            let (_, all) = rc.snapshot(None);
            for ns in all.iter().map(|e| e.value()).filter(|v| meta::deletion_timestamp(v).is_some()) {
                let name = meta::name(&ns).to_string();
                // Its own task: whatever goes wrong with one namespace leaves the controller running.
                let (st, n) = (state.clone(), name.clone());
                match tokio::spawn(async move { finish(&st, &n).await }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(namespace = name, error = %e, "namespace deletion will be retried"),
                    Err(e) => tracing::error!(namespace = name, error = %e, "namespace deletion failed; will retry"),
                }
            }
            // Re-check soon: content with graceful deletion takes time to go.
            let mut live = rc.subscribe(crate::cache::WatchStart::After(rc.rv())).ok().map(|s| s.live);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = async { if let Some(l) = live.as_mut() { let _ = l.recv().await; } else { std::future::pending::<()>().await } } => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

fn condition(ty: &str, failing: bool, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": if failing { "True" } else { "False" }, "reason": reason, "message": message,
           "lastTransitionTime": kubesvc_api::time::now_string()})
}

async fn finish(state: &Arc<State>, name: &str) -> Result<(), kubesvc_api::status::StatusError> {
    let reg = &state.registry;
    let opts = DeleteOptions::default();
    let mut remaining: Vec<(String, usize)> = Vec::new();
    let mut finalizers: Vec<(String, usize)> = Vec::new();
    for r in resources::all().iter().filter(|r| r.namespaced) {
        let rc = reg.cache.resource(r);
        // Objects already on their way out are left to finish (grace periods, finalizers).
        let live: Vec<String> = rc
            .snapshot(Some(name))
            .1
            .iter()
            .filter(|e| meta::deletion_timestamp(&e.value()).is_none())
            .map(|e| e.name.clone())
            .collect();
        let results: Vec<_> = futures::stream::iter(live)
            .map(|n| {
                let opts = &opts;
                async move { reg.delete(r, name, &n, opts).await }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            match result {
                Ok(_) => {}
                Err(err) if err.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        reg.consistent().await?;
        let left = rc.snapshot(Some(name)).1;
        if !left.is_empty() {
            remaining.push((r.gr().to_string(), left.len()));
            for e in &left {
                for f in meta::finalizers(&e.value()) {
                    match finalizers.iter_mut().find(|(n, _)| *n == f) {
                        Some((_, c)) => *c += 1,
                        None => finalizers.push((f, 1)),
                    }
                }
            }
        }
    }
    remaining.sort();
    finalizers.sort();
    let content = if remaining.is_empty() {
        condition("NamespaceContentRemaining", false, "ContentRemoved", "All content successfully removed")
    } else {
        let parts: Vec<String> = remaining.iter().map(|(gr, n)| format!("{gr} has {n} resource instances")).collect();
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            &format!("Some resources are remaining: {}", parts.join(", ")),
        )
    };
    let fin = if finalizers.is_empty() {
        condition("NamespaceFinalizersRemaining", false, "ContentRemoved", "All content successfully removed")
    } else {
        let parts: Vec<String> = finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizerRemain",
            &format!("Some finalizers are remaining: {}", parts.join(", ")),
        )
    };
    let conditions = [
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        content,
        fin,
    ];
    let r = namespaces();
    reg.mutate(r, "", name, Some(Subresource::Status), MutateOptions::default(), move |ns| {
        let status = meta::object_at(ns, &["status"]);
        // Keep transition times of conditions that did not change.
        let old: Vec<Value> = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let merged: Vec<Value> = conditions
            .iter()
            .map(|c| match old.iter().find(|o| o["type"] == c["type"]) {
                Some(o) if o["status"] == c["status"] && o["message"] == c["message"] => o.clone(),
                _ => c.clone(),
            })
            .collect();
        status.insert("conditions".into(), Value::Array(merged));
        Ok(())
    })
    .await?;
    if remaining.is_empty() {
        reg.mutate(r, "", name, Some(Subresource::Finalize), MutateOptions::default(), |ns| {
            if let Some(list) = ns.pointer_mut("/spec/finalizers").and_then(Value::as_array_mut) {
                list.retain(|f| f != NAMESPACE_FINALIZER);
            }
            Ok(())
        })
        .await?;
        tracing::info!(namespace = name, "namespace emptied and finalized");
    }
    Ok(())
}
