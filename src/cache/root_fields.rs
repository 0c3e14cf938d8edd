//! The cache's part of executing a query: serves cacheable root query fields from the
//! cache and stores what their resolvers produce, with the tags of everything they
//! embed. The gateway (`graphql::gateway`) puts a `RequestCache` in each request's data;
//! the Query root (`graphql::cached_root`) hands it every root field it resolves.
use super::keys::{DocumentContext, entry_key};
use super::policy::{ModulePolicy, Scope};
use super::tags::{TagCollector, collecting};
use super::{ALL_TAG, Cache, Lookup, Slot, module_tag};
use crate::domain::EntityId;
use crate::graphql::RequestContext;
use async_graphql::parser::types::{ExecutableDocument, Field};
use async_graphql::{Context, ServerResult, Value, Variables};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the cache did for each cached root field of one request; read by the HTTP
/// layer for `extensions.debug.cache` and `Cache-Control`.
pub struct CacheTrace {
    fields: Mutex<Vec<FieldOutcome>>,
    /// Tags of every cached field so far; `None` once a field was not cached.
    tags: Mutex<Option<std::collections::BTreeSet<String>>>,
    /// Scope and max-age of the response as a whole; `None` once a field is uncacheable.
    control: Mutex<Option<Option<(Scope, Duration)>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldOutcome {
    pub field: String,
    pub module: String,
    pub outcome: &'static str,
}

impl Default for CacheTrace {
    fn default() -> Self {
        Self {
            fields: Mutex::new(Vec::new()),
            tags: Mutex::new(Some(std::collections::BTreeSet::new())),
            control: Mutex::new(None),
        }
    }
}

impl CacheTrace {
    fn record(&self, field: &str, module: &str, outcome: &'static str) {
        if let Ok(mut fields) = self.fields.lock() {
            fields.push(FieldOutcome {
                field: field.to_owned(),
                module: module.to_owned(),
                outcome,
            });
        }
    }

    fn control(&self, part: Option<(Scope, Duration)>) {
        if let Ok(mut control) = self.control.lock() {
            *control = Some(match (*control, part) {
                (None, part) => part,
                (Some(None), _) | (_, None) => None,
                (Some(Some((s1, t1))), Some((s2, t2))) => {
                    let scope = if s1 == Scope::Private || s2 == Scope::Private {
                        Scope::Private
                    } else {
                        Scope::Public
                    };
                    Some((scope, t1.min(t2)))
                }
            });
        }
    }

    /// Adds a cached field's tags to the response's; `None` (a field not cached, or
    /// cached without tags) makes the whole response uncacheable.
    fn add_tags(&self, tags: Option<&[String]>) {
        if let Ok(mut all) = self.tags.lock() {
            match (all.as_mut(), tags) {
                (Some(all), Some(tags)) if !tags.is_empty() => all.extend(tags.iter().cloned()),
                _ => *all = None,
            }
        }
    }

    /// The union of the tags of every cached field, when all of them were cached.
    pub fn response_tags(&self) -> Option<Vec<String>> {
        let tags = self.tags.lock().ok()?.clone()?;
        (!tags.is_empty()).then(|| tags.into_iter().collect())
    }

    /// The response's max-age, when every root field was cacheable.
    pub fn max_age(&self) -> Option<Duration> {
        self.control
            .lock()
            .ok()
            .and_then(|c| *c)
            .flatten()
            .map(|(_, ttl)| ttl)
    }

    pub fn outcomes(&self) -> Vec<FieldOutcome> {
        self.fields.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The `Cache-Control` value for a successful query: cacheable only when every root
    /// field was.
    pub fn cache_control(&self) -> String {
        match self.control.lock().ok().and_then(|c| *c).flatten() {
            Some((Scope::Public, ttl)) => format!("public, max-age={}", ttl.as_secs()),
            Some((Scope::Private, ttl)) => format!("private, max-age={}", ttl.as_secs()),
            None => "no-store".into(),
        }
    }
}

/// One operation's view of the cache, learnt from its document before it runs.
pub(crate) struct RequestCache {
    cache: Cache,
    /// Whether the operation is a query whose root selections are all cacheable fields
    /// (`__typename` or an uncached field makes the response `no-store`).
    whole_response_cacheable: bool,
    /// The document's constants, for keys.
    document: DocumentContext,
}

/// Tags the field's declaration reads from its id arguments (`product(id: 5)` depends on
/// `product:5` even when it resolved to null).
fn argument_tags(policy: &ModulePolicy, field: &Field, doc: &DocumentContext) -> Vec<String> {
    policy
        .argument_tags
        .iter()
        .filter_map(|declared| {
            let (_, value) = field
                .arguments
                .iter()
                .find(|(name, _)| name.node == declared.argument)?;
            let id = match doc.constant(&value.node) {
                Value::String(id) => id.trim().parse::<i64>().ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            }?;
            Some((declared.tag)(EntityId::from_db(id)))
        })
        .collect()
}

impl RequestCache {
    /// Learns the operation `operation_name` selects in `doc`: its constants (for keys)
    /// and whether every one of its root fields is cacheable (so the whole response may be).
    pub(crate) fn new(
        cache: Cache,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Self {
        let document = DocumentContext::new(doc, operation_name, variables);
        let whole_response_cacheable = document.only_fields(doc, operation_name, |name| {
            cache.policy().fields.contains_key(name)
        });
        Self {
            cache,
            whole_response_cacheable,
            document,
        }
    }

    fn ttl_for(&self, policy: &ModulePolicy, value: &Value) -> Duration {
        let policy_all = self.cache.policy();
        if matches!(value, Value::Null) {
            policy_all.negative_ttl
        } else {
            policy_all.jittered(policy.ttl)
        }
    }

    /// Resolves one root field of a query: a cacheable one from the cache (or by
    /// `resolver`, storing the result), any other by `resolver` alone.
    pub(crate) async fn resolve(
        &self,
        ctx: &Context<'_>,
        resolver: impl Future<Output = ServerResult<Option<Value>>>,
    ) -> ServerResult<Option<Value>> {
        let field = &ctx.item.node;
        let name = field.name.node.as_str();
        let trace = ctx.data_opt::<Arc<CacheTrace>>();
        let policy = self.cache.policy().fields.get(name).cloned();
        let (Some(policy), Some(request)) = (policy, ctx.data_opt::<RequestContext>()) else {
            if let Some(trace) = trace {
                trace.control(None);
            }
            return resolver.await;
        };
        if let Some(trace) = trace {
            let cacheable = self.whole_response_cacheable;
            trace.control(cacheable.then_some((policy.scope, policy.ttl)));
        }
        let response_key = field.response_key().node.as_str();
        if !self.cache.enabled() {
            if let Some(trace) = trace {
                trace.record(response_key, policy.module, "bypass");
            }
            return resolver.await;
        }
        let identity = match policy.scope {
            Scope::Private => request.actor.cache_identity(),
            Scope::Public if request.actor.is_staff() => "staff".to_owned(),
            Scope::Public => "public".to_owned(),
        };
        let tenant = &request.actor.tenant;
        let key = entry_key(
            &self.cache.policy().prefix,
            tenant.as_str(),
            policy.module,
            name,
            &self.document.canonical_field(field),
            &identity,
        );
        let extra_tags = argument_tags(&policy, field, &self.document);
        let slot = Slot {
            tenant,
            module: policy.module,
            key: &key,
        };
        let (outcome, result) = match self.cache.lookup(&slot).await {
            Lookup::Hit(value, tags) | Lookup::Joined(value, tags) => {
                if let Some(trace) = trace {
                    trace.add_tags(Some(&tags));
                }
                ("hit", Ok(Some(value)))
            }
            Lookup::Bypass => {
                if let Some(trace) = trace {
                    trace.add_tags(None);
                }
                ("bypass", resolver.await)
            }
            Lookup::Miss { seq, leader } => {
                let collector = TagCollector::default();
                let result = collecting(collector.clone(), resolver).await;
                let unstorable = collector.unstorable();
                let value = result
                    .as_ref()
                    .ok()
                    .and_then(Option::as_ref)
                    .filter(|_| !unstorable);
                let tags = entry_tags(&policy, extra_tags, collector);
                if let Some(value) = value {
                    let ttl = self.ttl_for(&policy, value);
                    self.cache.store(&slot, value, ttl, &tags, seq).await;
                }
                if let Some(trace) = trace {
                    trace.add_tags(value.map(|_| tags.as_slice()));
                }
                if let Some(leader) = leader {
                    leader.complete(value.map(|v| (v.clone(), tags)));
                }
                ("miss", result)
            }
        };
        if let Some(trace) = trace {
            trace.record(response_key, policy.module, outcome);
        }
        result
    }
}

fn entry_tags(policy: &ModulePolicy, extra: Vec<String>, collector: TagCollector) -> Vec<String> {
    let mut tags = collector.into_tags();
    tags.extend(extra);
    tags.extend(policy.base_tags.iter().map(|t| (*t).to_owned()));
    tags.push(module_tag(policy.module));
    tags.push(ALL_TAG.to_owned());
    tags.sort();
    tags.dedup();
    tags
}
