//! The one tower layer in front of every gRPC server: who is calling, may they, and how did
//! the call go.
//!
//! For each request the layer
//! 1. authenticates the caller: the SPIFFE id of the verified client certificate
//!    ([`Caller`]), or `anonymous` without one; a certificate that names nobody (no URI SAN,
//!    two, or an id of another trust domain: [`crate::tls::peer_identity`]) is answered
//!    UNAUTHENTICATED before anything else, counted in `fetchreward_authn_refused_total` by
//!    service and reason;
//! 2. applies the method policy of the service ([`CallPolicy`]): a call to a method the caller
//!    may not use is answered PERMISSION_DENIED, with one message for every service, before
//!    its request is decoded — unless the method is *audited*, whose handler must record the
//!    refusal with what was asked (the vault's Detokenize, say): it gets the request with the
//!    decision and refuses it itself, with [`CallInfo::refusal`];
//! 3. puts a [`CallInfo`] (caller, method, decision) in the request's extensions, where
//!    handlers read it;
//! 4. records the call: `fetchreward_grpc_calls_total` and
//!    `fetchreward_grpc_call_duration_seconds` by service, method and status code,
//!    `fetchreward_authz_denied_total` by service and method, a debug line per call and a warn
//!    line per refusal.
//!
//! Trace context will be read from and written to the metadata here too: it belongs in
//! [`CallInfo`], beside the caller.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use fetchreward_telemetry::propagation;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use tracing::Instrument as _;

use crate::authz::Policy;
use crate::tls::{ANONYMOUS, IdentityError, peer_identity};

/// Who sent a request: the SPIFFE id of its verified client certificate, or `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller(String);

impl Caller {
    /// A caller that presented no verified identity.
    pub fn anonymous() -> Self {
        Caller(ANONYMOUS.to_owned())
    }

    /// A caller with a verified identity.
    pub fn identified(identity: impl Into<String>) -> Self {
        Caller(identity.into())
    }

    /// The identity, as policies list it and the audit trail records it.
    pub fn identity(&self) -> &str {
        &self.0
    }

    /// Whether the caller presented no identity.
    pub fn is_anonymous(&self) -> bool {
        self.0 == ANONYMOUS
    }

    /// The caller of a request: anonymous without a client certificate, else the identity
    /// its leaf certificate proves in `trust_domain`.
    fn of<B>(request: &http::Request<B>, trust_domain: &str) -> Result<Caller, IdentityError> {
        let leaf = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| chain.first().cloned());
        match leaf {
            None => Ok(Caller::anonymous()),
            Some(leaf) => peer_identity(leaf.as_ref(), trust_domain).map(Caller),
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the layer knows of a call, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Who is calling.
    pub caller: Caller,
    /// The method's name, e.g. `Detokenize`.
    pub method: &'static str,
    /// Whether the policy lets the caller use the method. Only an audited method's handler
    /// ever sees `false`.
    pub allowed: bool,
}

impl CallInfo {
    /// The call information of a request the layer has seen.
    ///
    /// A request that did not pass the layer (a unit test calling a handler directly) is an
    /// anonymous call that nothing allowed.
    pub fn of<T>(request: &tonic::Request<T>) -> CallInfo {
        request.extensions().get::<CallInfo>().cloned().unwrap_or(CallInfo {
            caller: Caller::anonymous(),
            method: "unknown",
            allowed: false,
        })
    }

    /// The refusal of this call: the same message from every service.
    pub fn refusal(&self) -> Status {
        denial(&self.caller, self.method)
    }
}

/// The PERMISSION_DENIED answer to `caller` for `method`.
pub fn denial(caller: &Caller, method: &str) -> Status {
    Status::permission_denied(format!("caller {caller} may not call {method}"))
}

/// One method of a service, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodRule {
    /// The method's name, e.g. `WriteLogins`.
    pub method: &'static str,
    /// The policy group that decides who may call it, e.g. `write`.
    pub group: &'static str,
    /// Whether a refused call still reaches the handler, to be audited there.
    pub audited: bool,
}

impl MethodRule {
    /// A method the layer refuses by itself.
    pub const fn guarded(method: &'static str, group: &'static str) -> Self {
        MethodRule { method, group, audited: false }
    }

    /// A method whose handler audits refusals.
    pub const fn audited(method: &'static str, group: &'static str) -> Self {
        MethodRule { method, group, audited: true }
    }
}

/// Which identities may call which method of one gRPC service.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    service: &'static str,
    package_service: &'static str,
    rules: HashMap<&'static str, MethodRule>,
    policy: Policy,
}

impl CallPolicy {
    /// The policy of `package_service` (e.g. `fetchreward.writer.v1.WriterService`), named
    /// `service` in metrics (e.g. `writer`), whose methods follow `rules` and whose groups
    /// `policy` fills. Health and reflection are open to every caller; any other method
    /// answers UNIMPLEMENTED.
    pub fn new(
        service: &'static str,
        package_service: &'static str,
        rules: &[MethodRule],
        policy: Policy,
    ) -> Self {
        let rules = rules.iter().map(|rule| (rule.method, *rule)).collect();
        CallPolicy { service, package_service, rules, policy }
    }

    /// The rule of a request path `/<package.Service>/<Method>`.
    fn rule(&self, path: &str) -> Option<&MethodRule> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service != self.package_service {
            return None;
        }
        self.rules.get(method)
    }
}

/// The layer; see the module's header.
#[derive(Debug, Clone)]
pub struct CallLayer {
    policy: Arc<CallPolicy>,
    trust_domain: Arc<str>,
}

impl CallLayer {
    /// A layer applying `policy` to callers identified in `trust_domain`.
    pub fn new(policy: CallPolicy, trust_domain: &str) -> Self {
        if policy.policy.admits_anonymous() {
            tracing::warn!(
                service = policy.service,
                "the policy lets anonymous callers in: anyone who reaches the grpc port may call \
                 what it lists for `anonymous`; for local development only"
            );
        }
        CallLayer { policy: Arc::new(policy), trust_domain: trust_domain.into() }
    }
}

impl<S> tower::Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService { inner, policy: self.policy.clone(), trust_domain: self.trust_domain.clone() }
    }
}

/// The service [`CallLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct CallService<S> {
    inner: S,
    policy: Arc<CallPolicy>,
    trust_domain: Arc<str>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for CallService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let policy = self.policy.clone();
        let Some(rule) = policy.rule(request.uri().path()).copied() else {
            // Health, reflection, or a method this service does not have.
            return Box::pin(self.inner.call(request));
        };
        let service = policy.service;
        let caller = match Caller::of(&request, &self.trust_domain) {
            Ok(caller) => caller,
            Err(err) => {
                metrics::counter!(
                    "fetchreward_authn_refused_total",
                    "service" => service,
                    "reason" => err.label()
                )
                .increment(1);
                tracing::warn!(service, method = rule.method, reason = %err, "caller not authenticated");
                record(service, rule.method, Code::Unauthenticated, started);
                let refusal = Status::unauthenticated(err.to_string()).into_http();
                return Box::pin(async move { Ok(refusal) });
            }
        };
        let allowed = policy.policy.allows(rule.group, caller.identity());
        if !allowed {
            // Callers are identities the CA issued (or `anonymous`): a bounded set.
            metrics::counter!(
                "fetchreward_authz_denied_total",
                "service" => service,
                "method" => rule.method,
                "caller" => caller.identity().to_owned()
            )
            .increment(1);
            tracing::warn!(service, method = rule.method, caller = %caller, "call refused");
            if !rule.audited {
                let refusal = denial(&caller, rule.method).into_http();
                record(service, rule.method, Code::PermissionDenied, started);
                return Box::pin(async move { Ok(refusal) });
            }
        }
        request.extensions_mut().insert(CallInfo { caller, method: rule.method, allowed });
        // The call's span, following the OpenTelemetry RPC conventions, in the trace of the
        // caller's span when the request carries one (`traceparent`).
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format_args!("{}/{}", policy.package_service, rule.method),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = policy.package_service,
            rpc.method = rule.method,
            rpc.grpc.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        propagation::set_parent_from_headers(&span, request.headers());
        propagation::record_ids(&span);
        // The clone that was made ready is the one called (tower's rule); a fresh one waits.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let call_span = span.clone();
        Box::pin(
            async move {
                let response = ready.call(request).await?;
                let code = status_code(&response);
                call_span.record("rpc.grpc.status_code", code as i32);
                record(service, rule.method, code, started);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The status of a unary response: an error is answered in the headers ("trailers only");
/// a success carries `grpc-status: 0` in the trailers, after the body.
fn status_code<B>(response: &http::Response<B>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

fn record(service: &'static str, method: &'static str, code: Code, started: Instant) {
    let code = code_label(code);
    let elapsed = started.elapsed();
    metrics::counter!(
        "fetchreward_grpc_calls_total",
        "service" => service,
        "method" => method,
        "code" => code
    )
    .increment(1);
    metrics::histogram!(
        "fetchreward_grpc_call_duration_seconds",
        "service" => service,
        "method" => method,
        "code" => code
    )
    .record(elapsed.as_secs_f64());
    tracing::debug!(service, method, code, elapsed_ms = elapsed.as_millis() as u64, "call");
}

/// A status code in snake case: a bounded metric label.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CallPolicy {
        CallPolicy::new(
            "writer",
            "fetchreward.writer.v1.WriterService",
            &[MethodRule::guarded("WriteLogins", "write")],
            Policy::default().allowing("write", &["spiffe://fetchreward/ingestor"]),
        )
    }

    #[test]
    fn paths_map_to_the_rules_of_the_service_only() {
        let policy = policy();
        let rule = policy.rule("/fetchreward.writer.v1.WriterService/WriteLogins");
        assert_eq!(rule.map(|r| r.group), Some("write"));
        assert!(policy.rule("/fetchreward.writer.v1.WriterService/Other").is_none());
        assert!(policy.rule("/grpc.health.v1.Health/Check").is_none());
        assert!(policy.rule("nonsense").is_none());
    }

    #[test]
    fn a_status_in_the_headers_is_the_calls_code() {
        let refused = denial(&Caller::anonymous(), "WriteLogins").into_http::<tonic::body::Body>();
        assert_eq!(status_code(&refused), Code::PermissionDenied);
        assert_eq!(status_code(&http::Response::new(())), Code::Ok);
    }

    #[test]
    fn one_denial_message_for_everyone() {
        let status = denial(&Caller::identified("spiffe://fetchreward/reader"), "WriteLogins");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "caller spiffe://fetchreward/reader may not call WriteLogins");
    }
}
