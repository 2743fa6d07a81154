//! EndpointSlices.

use serde_json::Value;

use super::{Generation, Rules};
use crate::meta;

pub struct EndpointSliceRules;

impl Rules for EndpointSliceRules {
    fn generation(&self) -> Generation {
        Generation::ContentOrLabels
    }

    fn default(&self, obj: &mut Value) {
        for p in obj.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            meta::default_at(p, &[], "protocol", "TCP");
            meta::default_at(p, &[], "name", "");
        }
    }
}
