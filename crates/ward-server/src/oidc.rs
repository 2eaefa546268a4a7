//! Talking to an organisation's OpenID Connect provider: discovery, the authorization request
//! (state, nonce, PKCE S256), the code exchange with ID token validation (the `openidconnect`
//! crate checks signature, issuer, audience, expiry and nonce), and the validation of
//! back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0), which that crate does
//! not cover: the signature is checked with the provider's published keys through the crate's
//! JSON Web Key type, the claims here.
//!
//! HTTP goes through a reqwest client of Ward's own (one TLS stack, redirects never followed,
//! so a provider cannot bounce Ward's requests elsewhere; each answer capped at 1 MiB; no
//! proxy; `[oidc] ca_file` added to the trusted roots). Issuers must use https. Ward refuses
//! to reach internal addresses (loopback, private, link-local, unique-local, unspecified,
//! multicast, carrier NAT, benchmarking, IETF protocol assignments, reserved, site-local, and
//! IPv4 addresses embedded in IPv6: mapped, compatible, NAT64 and 6to4): IP literals in any
//! provider URL are checked before the call, and
//! host names are resolved by Ward's own resolver, which refuses a name with any such address
//! and hands the connector only the addresses it checked, so a name that re-resolves to an
//! internal address between check and use (DNS rebinding) is never connected to.
//! `[oidc] allow_http_loopback` (tests) admits loopback addresses and http on them.
//!
//! Discovery and the key set are cached per organisation and issuer, each for at most
//! [`METADATA_TTL`] (a key the provider withdraws stops being trusted within that time).
//! Sooner, a token that names a key Ward does not know or fails its signature forces one
//! refetch of the keys: for an ID token (which came from the token endpoint, over TLS, for a
//! valid code) always; for an anonymous back-channel logout token at most one per
//! [`JWKS_REFETCH_INTERVAL`], counted apart, so made-up key ids can neither make Ward hammer
//! the provider nor hold back a real key rotation on the sign-in path.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl,
    JsonWebKey, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use ward_domain::ids::OrgId;

use crate::config::OidcConfig;

/// The most bytes Ward reads of any provider answer (discovery, keys, token endpoint).
const MAX_BODY: usize = 1024 * 1024;
/// How long past its `iat` a logout token's id is remembered at most (its `exp` is clamped).
const MAX_LOGOUT_LIFETIME_SECS: i64 = 86_400;
/// How long discovered provider metadata is used before it is fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(300);
/// The shortest time between two fetches of a provider's key set.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The event a logout token must carry.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a provider exchange failed; the API maps each to a stable problem code. Messages are
/// for logs only and never carry tokens.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered badly (discovery, keys, token endpoint).
    #[error("provider unavailable: {0}")]
    Provider(String),
    /// A token failed validation.
    #[error("token invalid: {0}")]
    Token(String),
    /// The stored settings are unusable (bad issuer URL, http issuer not allowed).
    #[error("provider settings unusable: {0}")]
    Settings(String),
}

/// HTTP errors of Ward's client, as the `openidconnect` crate wants them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// A provider's discovered metadata (with its key set), when each part was fetched, and
/// when a logout token last forced a key refetch.
#[derive(Clone)]
struct Cached {
    metadata: CoreProviderMetadata,
    fetched_at: Instant,
    /// When the key set in `metadata` was fetched (set only by a successful fetch).
    jwks_fetched_at: Instant,
    /// When a back-channel logout token last forced a refetch (tried; rate limit of that path).
    logout_refetch_at: Option<Instant>,
}

/// What forces a key refetch, for its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetch {
    /// An ID token from the token endpoint: not limited.
    IdToken,
    /// An anonymous back-channel logout token: at most one per refetch interval.
    Logout,
}

/// Ward's HTTP client for providers, with the discovery and key cache.
#[derive(Clone)]
pub struct OidcHttp {
    /// `None` only in a state built directly (tests) with settings the start refuses: every
    /// call then fails; there is never a client without Ward's checks.
    client: Option<reqwest::Client>,
    allow_http_loopback: bool,
    cache: Arc<Mutex<HashMap<(OrgId, String), Cached>>>,
    metadata_ttl: Duration,
    jwks_max_age: Duration,
    jwks_refetch_interval: Duration,
}

/// Whether Ward may connect to `ip`: never an internal address, except loopback when
/// `allow_loopback` (the test setting).
fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    !internal_ip(ip) || (allow_loopback && ip_is_loopback(ip))
}

fn ip_is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// Resolves provider host names and refuses any name with an internal address; the connector
/// gets exactly the addresses checked here (no second lookup it could be rebound in).
#[derive(Clone, Default)]
struct CheckedResolver {
    allow_loopback: bool,
    /// Fixed answers instead of the system resolver (tests only).
    fixed: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let this = self.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match this.fixed.get(&host) {
                Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if addrs.is_empty() {
                return Err("the provider's host name has no address".into());
            }
            // One internal address is enough to refuse: a name that mixes them is not a
            // provider's public endpoint.
            if addrs.iter().any(|a| !address_allowed(a.ip(), this.allow_loopback)) {
                return Err("the provider's host name resolves to an internal address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The PEM certificates of `[oidc] ca_file`, for the trusted roots. Each one is parsed as a
/// trust anchor here (a trial add to a root store), so a corrupt certificate is refused at
/// start rather than left out, or failing the client, later.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read oidc.ca_file {}: {e}", path.display()))?;
    let ders = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("oidc.ca_file {} is not a PEM bundle", path.display()))?;
    if ders.is_empty() {
        return Err(format!("oidc.ca_file {} holds no certificate", path.display()));
    }
    let mut trial = rustls::RootCertStore::empty();
    let mut certs = Vec::with_capacity(ders.len());
    for (n, der) in ders.into_iter().enumerate() {
        let bad = || format!("oidc.ca_file {}: certificate {} cannot be parsed", path.display(), n + 1);
        trial.add(der.clone()).map_err(|_| bad())?;
        certs.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|_| bad())?);
    }
    Ok(certs)
}

impl OidcHttp {
    /// A client with the configured timeout and trusted roots that never follows redirects
    /// and resolves names through Ward's checking resolver. An error (a `ca_file` that cannot
    /// be used, a client that cannot be built) stops the start: there is no fallback client.
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        Self::with_resolver(config, CheckedResolver { allow_loopback: config.allow_http_loopback, fixed: Arc::default() })
    }

    /// A client that refuses every call (for a state built without the start's checks, whose
    /// settings [`OidcHttp::new`] refused).
    pub fn unusable(config: &OidcConfig) -> Self {
        Self::from_client(config, None)
    }

    fn with_resolver(config: &OidcConfig, resolver: CheckedResolver) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.http_timeout_secs))
            // A proxy would resolve the name itself, past Ward's address check.
            .no_proxy()
            .dns_resolver(resolver);
        if let Some(path) = &config.ca_file {
            builder = builder.tls_certs_merge(read_ca_file(path)?);
        }
        let client = builder.build().map_err(|e| format!("the single sign-on HTTP client cannot be built: {}", error_chain(&e)))?;
        Ok(Self::from_client(config, Some(client)))
    }

    fn from_client(config: &OidcConfig, client: Option<reqwest::Client>) -> Self {
        Self {
            client,
            allow_http_loopback: config.allow_http_loopback,
            cache: Arc::default(),
            metadata_ttl: METADATA_TTL,
            jwks_max_age: METADATA_TTL,
            jwks_refetch_interval: JWKS_REFETCH_INTERVAL,
        }
    }

    /// Checks an issuer URL against the transport rule (https, or http on loopback when
    /// allowed) and refuses internal IP literals and `localhost` (loopback ones are admitted
    /// when allowed), so an admin cannot point Ward at its own network by address. Names are
    /// checked when resolved.
    pub fn check_issuer(&self, issuer: &str) -> Result<IssuerUrl, OidcError> {
        let url = IssuerUrl::new(issuer.to_owned()).map_err(|_| OidcError::Settings("the issuer is not a URL".into()))?;
        let host = url.url().host_str().unwrap_or("");
        if !self.host_allowed(host) {
            return Err(OidcError::Settings("the issuer must not be an internal address".into()));
        }
        match url.url().scheme() {
            "https" => Ok(url),
            "http" if self.allow_http_loopback && is_loopback(host) => Ok(url),
            _ => Err(OidcError::Settings("the issuer must use https".into())),
        }
    }

    /// The address rule for a URL's host as written: IP literals and `localhost` names.
    fn host_allowed(&self, host: &str) -> bool {
        !is_internal_host(host) || (self.allow_http_loopback && is_loopback_host(host))
    }

    /// Whether a URL the browser is sent to, or Ward calls, meets the transport rule.
    fn transport_ok(&self, url: &str) -> bool {
        url.starts_with("https://")
            || (self.allow_http_loopback
                && reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && is_loopback(u.host_str().unwrap_or(""))))
    }

    /// Forgets an organisation's cached discovery and keys (its settings changed).
    pub fn invalidate(&self, org: OrgId) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).retain(|(o, _), _| *o != org);
    }

    /// The provider's metadata with its key set: from the cache while both are fresh, else
    /// discovered again; the cached key set is kept only when the key set URL did not change
    /// and the keys are younger than their maximum age (so withdrawn keys stop being trusted).
    async fn metadata(&self, p: &ProviderSettings) -> Result<CoreProviderMetadata, OidcError> {
        let url = self.check_issuer(&p.issuer)?;
        let key = (p.org, p.issuer.clone());
        let known = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.get(&key) {
                Some(c) if c.fetched_at.elapsed() < self.metadata_ttl && c.jwks_fetched_at.elapsed() < self.jwks_max_age => {
                    return Ok(c.metadata.clone());
                }
                other => other.cloned(),
            }
        };
        let fresh = self.discover(&url).await?;
        let (metadata, jwks_fetched_at) = match known {
            Some(k) if k.metadata.jwks_uri() == fresh.jwks_uri() && k.jwks_fetched_at.elapsed() < self.jwks_max_age => {
                (fresh.set_jwks(k.metadata.jwks().clone()), k.jwks_fetched_at)
            }
            _ => {
                let jwks = self.fetch_keys(&fresh).await?;
                (fresh.set_jwks(jwks), Instant::now())
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        // One issuer per organisation: entries of its earlier issuers are dead weight.
        cache.retain(|(o, i), _| *o != p.org || *i == p.issuer);
        let mut entry = Cached { metadata, fetched_at: Instant::now(), jwks_fetched_at, logout_refetch_at: None };
        if let Some(now) = cache.get(&key) {
            entry.logout_refetch_at = now.logout_refetch_at;
            // A key refetch that finished while this (slower) discovery ran has newer keys.
            if now.jwks_fetched_at > entry.jwks_fetched_at && now.metadata.jwks_uri() == entry.metadata.jwks_uri() {
                entry.metadata = entry.metadata.set_jwks(now.metadata.jwks().clone());
                entry.jwks_fetched_at = now.jwks_fetched_at;
            }
        }
        let metadata = entry.metadata.clone();
        cache.insert(key, entry);
        Ok(metadata)
    }

    /// Fetches and checks the discovery document (its issuer must be the configured one).
    async fn discover(&self, url: &IssuerUrl) -> Result<CoreProviderMetadata, OidcError> {
        let at = url.join(".well-known/openid-configuration").map_err(|_| OidcError::Settings("bad issuer URL".into()))?;
        let req = openidconnect::http::Request::builder()
            .uri(at.as_str())
            .header(openidconnect::http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let res = self.call(req).await.map_err(|e| OidcError::Provider(format!("discovery: {e}")))?;
        if res.status() != openidconnect::http::StatusCode::OK {
            return Err(OidcError::Provider(format!("discovery answered {}", res.status())));
        }
        let metadata: CoreProviderMetadata =
            serde_json::from_slice(res.body()).map_err(|e| OidcError::Provider(format!("discovery document: {e}")))?;
        if metadata.issuer() != url {
            return Err(OidcError::Provider("the discovery document names another issuer".into()));
        }
        Ok(metadata)
    }

    async fn fetch_keys(&self, metadata: &CoreProviderMetadata) -> Result<CoreJsonWebKeySet, OidcError> {
        CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), self).await.map_err(|e| OidcError::Provider(format!("key set: {e}")))
    }

    /// After a signature check failed with the cached keys: fetches the key set once more.
    /// For an ID token always; for a logout token not when the keys were fetched, or a logout
    /// token forced a refetch, within the refetch interval (then `None`: nothing new to try).
    /// The keys' fetch time is set only by a successful fetch.
    async fn refresh_keys(&self, p: &ProviderSettings, why: Refetch) -> Result<Option<CoreProviderMetadata>, OidcError> {
        let key = (p.org, p.issuer.clone());
        let metadata = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(c) = cache.get_mut(&key) else { return Ok(None) };
            if why == Refetch::Logout {
                let recent = |t: Instant| t.elapsed() < self.jwks_refetch_interval;
                if recent(c.jwks_fetched_at) || c.logout_refetch_at.is_some_and(recent) {
                    return Ok(None);
                }
                // Taken before fetching, so concurrent logout tokens share this one refetch.
                c.logout_refetch_at = Some(Instant::now());
            }
            c.metadata.clone()
        };
        let jwks = self.fetch_keys(&metadata).await?;
        let fetched_at = Instant::now();
        let metadata = metadata.set_jwks(jwks);
        if let Some(c) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&key)
            && c.metadata.jwks_uri() == metadata.jwks_uri()
            && c.jwks_fetched_at < fetched_at
        {
            c.metadata = c.metadata.clone().set_jwks(metadata.jwks().clone());
            c.jwks_fetched_at = fetched_at;
        }
        Ok(Some(metadata))
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost")
}

/// Loopback literals (any of 127/8, ::1) and `localhost` names.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip_is_loopback(ip),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

/// Internal addresses as literals (see [`internal_ip`]), and `localhost`.
fn is_internal_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => internal_ip(ip),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

/// Loopback, private, link-local, unique-local, site-local, unspecified, multicast,
/// broadcast, carrier NAT, benchmarking, IETF protocol assignments, reserved, and IPv6
/// addresses carrying an internal IPv4 one (mapped, compatible, NAT64, 6to4).
fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
                || embedded_v4(v6).is_some_and(internal_v4)
        }
    }
}

/// The IPv4 address an IPv6 one carries: mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96` and `64:ff9b:1::/48` (the last 32 bits), 6to4 `2002:AABB:CCDD::/48`.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(m) = v6.to_ipv4_mapped() {
        return Some(m);
    }
    match s {
        // Compatible (`::1` and `::` are loopback and unspecified, checked on their own).
        [0, 0, 0, 0, 0, 0, _, _] => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0x64, 0xff9b, 1, ..] => Some(last),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space (carrier NAT)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || a >= 240 // reserved 240.0.0.0/4
}

impl<'c> AsyncHttpClient<'c> for OidcHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            // Every call goes to the issuer's own endpoints; hold each to the issuer's rule.
            if !self.transport_ok(&url) {
                return Err(HttpError("provider endpoints must use https".into()));
            }
            // Endpoints come from the provider's discovery document: an IP literal there is
            // checked like the issuer (names are checked by the resolver).
            if !reqwest::Url::parse(&url).is_ok_and(|u| self.host_allowed(u.host_str().unwrap_or(""))) {
                return Err(HttpError("provider endpoints must not be internal addresses".into()));
            }
            let Some(client) = &self.client else {
                return Err(HttpError("the single sign-on HTTP client is unusable (see the start's configuration check)".into()));
            };
            let mut res = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(error_chain(&e.without_url())))?;
            let mut out = openidconnect::http::Response::builder().status(res.status());
            if let Some(h) = out.headers_mut() {
                *h = res.headers().clone();
            }
            // Read in chunks and stop past the cap: a provider cannot make Ward buffer without end.
            let mut bytes = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| HttpError(e.without_url().to_string()))? {
                if bytes.len() + chunk.len() > MAX_BODY {
                    return Err(HttpError("the provider's answer is larger than 1 MiB".into()));
                }
                bytes.extend_from_slice(&chunk);
            }
            out.body(bytes).map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// An error with its causes (reqwest's own message hides why a connection failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A provider as the flow needs it.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The organisation (the cache is kept per organisation and issuer).
    pub org: OrgId,
    /// Issuer URL.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret, if any.
    pub client_secret: Option<String>,
    /// Extra scopes.
    pub scopes: Vec<String>,
}

/// The authorization request to send the browser to, and what to keep for the callback.
#[derive(Debug)]
pub struct AuthRequest {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    /// The state parameter.
    pub state: String,
    /// The nonce.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// What a validated ID token says.
#[derive(Debug)]
pub struct Identity {
    /// The subject.
    pub subject: String,
    /// The provider's session id (`sid`), when sent.
    pub sid: Option<String>,
    /// Every claim of the (validated) token, for the role claim and names.
    pub claims: serde_json::Map<String, Value>,
}

/// Discovers the provider and builds the authorization request.
pub async fn authorization_request(http: &OidcHttp, p: &ProviderSettings, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
    let metadata = http.metadata(p).await?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| OidcError::Settings("bad redirect URI".into()))?;
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(p.client_id.clone()), p.client_secret.clone().map(ClientSecret::new))
            .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
    for s in &p.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
    // The browser is sent there with the state and the PKCE challenge: never over plain http.
    if !http.transport_ok(url.as_str()) {
        return Err(OidcError::Settings("the authorization endpoint must use https".into()));
    }
    Ok(AuthRequest {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Exchanges the code (with the PKCE verifier) and validates the ID token against the nonce.
pub async fn exchange(
    http: &OidcHttp,
    p: &ProviderSettings,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> Result<Identity, OidcError> {
    let metadata = http.metadata(p).await?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| OidcError::Settings("bad redirect URI".into()))?;
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(p.client_id.clone()), p.client_secret.clone().map(ClientSecret::new))
            .set_redirect_uri(redirect);
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| OidcError::Provider(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Token(format!("token endpoint refused: {:?}", r.error())),
            other => OidcError::Provider(other.to_string()),
        })?;
    let id_token = token.id_token().ok_or_else(|| OidcError::Token("no ID token".into()))?;
    let nonce = Nonce::new(nonce.to_owned());
    let subject = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(verified) => verified.subject().as_str().to_owned(),
        // Perhaps the provider rolled its keys since Ward fetched them: one more try with a
        // fresh key set (not limited by logout tokens' refetches), the code already spent.
        Err(ClaimsVerificationError::SignatureVerification(first)) => {
            let Some(metadata) = http.refresh_keys(p, Refetch::IdToken).await? else {
                return Err(OidcError::Token(first.to_string()));
            };
            let again = CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(p.client_id.clone()),
                p.client_secret.clone().map(ClientSecret::new),
            );
            id_token.claims(&again.id_token_verifier(), &nonce).map_err(|e| OidcError::Token(e.to_string()))?.subject().as_str().to_owned()
        }
        Err(e) => return Err(OidcError::Token(e.to_string())),
    };
    // The token's signature is verified: its payload can be read for the claims the typed
    // view leaves out (the configured role claim, sid).
    let jwt = serde_json::to_value(id_token).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let claims = payload(&jwt)?;
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    Ok(Identity { subject, sid, claims })
}

/// The JSON payload of a compact JWT (no checks: callers verify first).
fn payload(jwt: &str) -> Result<serde_json::Map<String, Value>, OidcError> {
    let part = jwt.split('.').nth(1).ok_or_else(|| OidcError::Token("not a compact JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| OidcError::Token("payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| OidcError::Token("payload is not a JSON object".into()))
}

/// A verified logout token's claims.
#[derive(Debug)]
pub struct LogoutClaims {
    /// Subject, if sent.
    pub sub: Option<String>,
    /// Provider session, if sent.
    pub sid: Option<String>,
    /// Token id.
    pub jti: String,
    /// Until when the token id must be remembered (Unix ms).
    pub remember_until: i64,
}

/// Validates a back-channel logout token (Back-Channel Logout 1.0 section 2.6): an asymmetric
/// signature by one of the issuer's keys, `iss`, `aud` containing our client id, a recent
/// `iat`, unexpired `exp` if present, the back-channel event, `sub` or `sid`, a `jti`, and no
/// `nonce`.
pub async fn verify_logout_token(http: &OidcHttp, p: &ProviderSettings, token: &str, now_ms: i64) -> Result<LogoutClaims, OidcError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, sig_b64] = parts.as_slice() else {
        return Err(OidcError::Token("not a signed compact JWT".into()));
    };
    let header: serde_json::Map<String, Value> = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| OidcError::Token("bad header".into()))?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    if !matches!(alg_name, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512" | "EdDSA") {
        return Err(OidcError::Token("the signature algorithm is not an allowed asymmetric one".into()));
    }
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(Value::String(alg_name.to_owned())).map_err(|_| OidcError::Token("unknown algorithm".into()))?;
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| OidcError::Token("bad signature encoding".into()))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let signing_input = format!("{header_b64}.{payload_b64}");
    let verifies = |m: &CoreProviderMetadata| {
        m.jwks()
            .keys()
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.key_id().is_some_and(|id| id.as_str() == kid)))
            .any(|k| k.verify_signature(&alg, signing_input.as_bytes(), &signature).is_ok())
    };
    let mut metadata = http.metadata(p).await?;
    if !verifies(&metadata) {
        // A key Ward has not seen yet (rotation): one rate-limited refetch, then refuse.
        match http.refresh_keys(p, Refetch::Logout).await? {
            Some(fresh) if verifies(&fresh) => metadata = fresh,
            _ => return Err(OidcError::Token("no provider key verifies the signature".into())),
        }
    }
    let claims = payload(token)?;
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let issuer = metadata.issuer().as_str();
    if str_claim("iss").as_deref() != Some(issuer) {
        return Err(OidcError::Token("wrong issuer".into()));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == p.client_id,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(p.client_id.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(OidcError::Token("wrong audience".into()));
    }
    let now = now_ms / 1000;
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| OidcError::Token("no iat".into()))?;
    // Issued within the last ten minutes (and not in the future, beyond a minute of skew).
    if iat > now + 60 || iat < now - 600 {
        return Err(OidcError::Token("iat is too old or in the future".into()));
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    if exp.is_some_and(|e| e <= now - 60) {
        return Err(OidcError::Token("expired".into()));
    }
    if !claims.get("events").and_then(Value::as_object).is_some_and(|e| e.get(BACKCHANNEL_EVENT).is_some_and(Value::is_object)) {
        return Err(OidcError::Token("no back-channel logout event".into()));
    }
    if claims.contains_key("nonce") {
        return Err(OidcError::Token("a logout token must not carry a nonce".into()));
    }
    let (sub, sid) = (str_claim("sub"), str_claim("sid"));
    if sub.is_none() && sid.is_none() {
        return Err(OidcError::Token("neither sub nor sid".into()));
    }
    let jti = str_claim("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| OidcError::Token("no jti".into()))?;
    let remember_until = remember_logout_until(iat, exp);
    Ok(LogoutClaims { sub, sid, jti, remember_until })
}

/// Until when (Unix ms) a logout token's id is kept: past any time the token could still be
/// accepted (issued within ten minutes, a minute of skew), at least `iat` + 10 minutes, its
/// `exp` clamped to a day after `iat`, and no arithmetic that can overflow on hostile claims.
fn remember_logout_until(iat: i64, exp: Option<i64>) -> i64 {
    let floor = iat.saturating_add(600);
    let exp = exp.unwrap_or(floor).clamp(floor, iat.saturating_add(MAX_LOGOUT_LIFETIME_SECS).max(floor));
    exp.saturating_add(120).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_issuers_are_refused_unless_loopback_is_allowed() {
        let strict = OidcHttp::new(&OidcConfig::default()).unwrap();
        assert!(strict.check_issuer("https://idp.example.org").is_ok());
        assert!(strict.check_issuer("http://127.0.0.1:4000").is_err());
        let loose = OidcHttp::new(&loose()).unwrap();
        assert!(loose.check_issuer("http://127.0.0.1:4000").is_ok());
        assert!(loose.check_issuer("http://idp.example.org").is_err());
        assert!(loose.check_issuer("ftp://127.0.0.1").is_err());
    }

    #[test]
    fn internal_issuer_addresses_are_refused_unless_loopback_is_allowed() {
        let strict = OidcHttp::new(&OidcConfig::default()).unwrap();
        for bad in [
            "https://127.0.0.1",
            "https://10.1.2.3/realm",
            "https://192.168.0.1",
            "https://172.16.5.5",
            "https://169.254.169.254",
            "https://0.0.0.0",
            "https://[::1]",
            "https://[fe80::1]",
            "https://[fd00::1]",
            "https://[::ffff:10.0.0.1]",
            "https://localhost",
            "https://localhost.",
            "https://db.localhost",
        ] {
            assert!(strict.check_issuer(bad).is_err(), "{bad}");
        }
        assert!(strict.check_issuer("https://8.8.8.8").is_ok());
        assert!(strict.check_issuer("https://[2001:db8::1]").is_ok());
        // The test allowance admits loopback only.
        let loose = OidcHttp::new(&loose()).unwrap();
        assert!(loose.check_issuer("https://127.0.0.2").is_ok());
        assert!(loose.check_issuer("https://localhost").is_ok());
        assert!(loose.check_issuer("https://10.1.2.3").is_err());
        assert!(loose.check_issuer("https://[fd00::1]").is_err());
    }

    #[test]
    fn logout_token_ids_are_remembered_without_overflow_and_for_at_most_a_day() {
        let iat = 1_800_000_000;
        // Hostile exp values neither overflow nor keep the row for ages.
        assert_eq!(remember_logout_until(iat, Some(i64::MAX)), (iat + 86_400 + 120) * 1000);
        assert_eq!(remember_logout_until(iat, Some(i64::MIN)), (iat + 600 + 120) * 1000);
        // At least the acceptance window; a normal exp as given.
        assert_eq!(remember_logout_until(iat, None), (iat + 720) * 1000);
        assert_eq!(remember_logout_until(iat, Some(iat + 3600)), (iat + 3720) * 1000);
        // Even an absurd iat does not panic.
        assert!(remember_logout_until(i64::MAX, Some(i64::MAX)) > 0);
    }

    /// A fake provider's options: the authorization endpoint, spaces padding the discovery
    /// document, TLS with this server configuration and the host name its issuer uses.
    #[derive(Default)]
    struct Fake {
        auth_endpoint: Option<String>,
        pad: usize,
        tls: Option<(Arc<rustls::ServerConfig>, &'static str)>,
    }

    /// A running fake provider: its issuer and how many discovery and key set requests it got.
    struct Running {
        issuer: String,
        discoveries: Arc<std::sync::atomic::AtomicUsize>,
        key_fetches: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Running {
        fn counts(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.discoveries.load(SeqCst), self.key_fetches.load(SeqCst))
        }
    }

    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut conn: S,
        metadata: String,
        counts: (Arc<std::sync::atomic::AtomicUsize>, Arc<std::sync::atomic::AtomicUsize>),
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let body = if String::from_utf8_lossy(&req).contains("/jwks") {
            counts.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r#"{"keys":[]}"#.to_owned()
        } else {
            counts.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            metadata
        };
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
        let _ = conn.write_all(head.as_bytes()).await;
        let _ = conn.write_all(body.as_bytes()).await;
        let _ = conn.shutdown().await;
    }

    /// A provider on 127.0.0.1 answering discovery (padded with spaces) and an empty key set.
    async fn fake(f: Fake) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = match &f.tls {
            Some((_, host)) => format!("https://{host}:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let auth = f.auth_endpoint.unwrap_or_else(|| format!("{issuer}/auth"));
        let metadata = serde_json::json!({
            "issuer": issuer, "authorization_endpoint": auth, "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"), "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
            + &" ".repeat(f.pad);
        let running = Running { issuer, discoveries: Arc::default(), key_fetches: Arc::default() };
        let counts = (running.discoveries.clone(), running.key_fetches.clone());
        let tls = f.tls.map(|(c, _)| tokio_rustls::TlsAcceptor::from(c));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (metadata, counts, tls) = (metadata.clone(), counts.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(conn) = acceptor.accept(conn).await {
                                answer(conn, metadata, counts).await;
                            }
                        }
                        None => answer(conn, metadata, counts).await,
                    }
                });
            }
        });
        running
    }

    async fn fake_provider(auth_endpoint: Option<&str>, pad: usize) -> String {
        fake(Fake { auth_endpoint: auth_endpoint.map(str::to_owned), pad, tls: None }).await.issuer
    }

    fn provider(issuer: String) -> ProviderSettings {
        ProviderSettings { org: OrgId(uuid::Uuid::nil()), issuer, client_id: "ward".into(), client_secret: None, scopes: vec![] }
    }

    fn loose() -> OidcConfig {
        OidcConfig { allow_http_loopback: true, ..OidcConfig::default() }
    }

    const CB: &str = "https://ward.example.org/cb";

    #[tokio::test]
    async fn discovery_and_keys_are_cached_per_organisation_until_invalidated() {
        let http = OidcHttp::new(&loose()).unwrap();
        let f = fake(Fake::default()).await;
        let p = provider(f.issuer.clone());
        for _ in 0..3 {
            authorization_request(&http, &p, CB).await.unwrap();
        }
        assert_eq!(f.counts(), (1, 1), "one discovery and one key set for three sign-ins");
        // Another organisation with the same issuer has its own entry.
        let other = ProviderSettings { org: OrgId(uuid::Uuid::from_u128(7)), ..p.clone() };
        authorization_request(&http, &other, CB).await.unwrap();
        assert_eq!(f.counts(), (2, 2));
        // Saving the settings forgets that organisation's entry only.
        http.invalidate(p.org);
        authorization_request(&http, &p, CB).await.unwrap();
        authorization_request(&http, &other, CB).await.unwrap();
        assert_eq!(f.counts(), (3, 3));
        // Past the metadata lifetime the document is fetched again; the keys are kept.
        let short = OidcHttp { metadata_ttl: Duration::ZERO, ..OidcHttp::new(&loose()).unwrap() };
        authorization_request(&short, &p, CB).await.unwrap();
        authorization_request(&short, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (5, 4));
    }

    #[tokio::test]
    async fn keys_older_than_their_maximum_age_are_fetched_again_with_the_same_key_set_url() {
        let f = fake(Fake::default()).await;
        let p = provider(f.issuer.clone());
        let http = OidcHttp::new(&loose()).unwrap();
        authorization_request(&http, &p, CB).await.unwrap();
        authorization_request(&http, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (1, 1), "fresh metadata and keys come from the cache");
        // Keys past their age are refetched even though the metadata is fresh and the key set
        // URL unchanged: a key the provider withdrew is not trusted until a restart.
        let aged = OidcHttp { jwks_max_age: Duration::from_millis(200), ..OidcHttp::new(&loose()).unwrap() };
        authorization_request(&aged, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (2, 2));
        authorization_request(&aged, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (2, 2));
        tokio::time::sleep(Duration::from_millis(250)).await;
        authorization_request(&aged, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (3, 3));
        assert_eq!(METADATA_TTL, Duration::from_secs(300));
        assert_eq!(OidcHttp::new(&loose()).unwrap().jwks_max_age, METADATA_TTL);
    }

    #[tokio::test]
    async fn an_organisation_keeps_cache_entries_for_its_current_issuer_only() {
        let http = OidcHttp::new(&loose()).unwrap();
        let (a, b) = (fake(Fake::default()).await, fake(Fake::default()).await);
        authorization_request(&http, &provider(a.issuer.clone()), CB).await.unwrap();
        authorization_request(&http, &provider(b.issuer.clone()), CB).await.unwrap();
        let keys: Vec<String> = http.cache.lock().unwrap().keys().map(|(_, i)| i.clone()).collect();
        assert_eq!(keys, vec![b.issuer.clone()]);
    }

    /// A logout token with a key id the provider never published (its signature is junk).
    fn random_kid_token(n: u32) -> String {
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"attacker-{n}"}}"#));
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]))
    }

    #[tokio::test]
    async fn unknown_key_ids_force_one_rate_limited_key_refetch() {
        let http = OidcHttp { jwks_refetch_interval: Duration::from_millis(400), ..OidcHttp::new(&loose()).unwrap() };
        let f = fake(Fake::default()).await;
        let p = provider(f.issuer.clone());
        let now = 1_800_000_000_000;
        // The keys were just fetched with the metadata: an unknown kid does not refetch yet.
        assert!(matches!(verify_logout_token(&http, &p, &random_kid_token(0), now).await, Err(OidcError::Token(_))));
        assert_eq!(f.counts(), (1, 1));
        tokio::time::sleep(Duration::from_millis(450)).await;
        // Later, the first unknown kid refetches once; a flood of them does not.
        for n in 1..20 {
            assert!(matches!(verify_logout_token(&http, &p, &random_kid_token(n), now).await, Err(OidcError::Token(_))));
        }
        assert_eq!(f.counts(), (1, 2), "one refetch for nineteen tokens with unknown key ids");
    }

    #[tokio::test]
    async fn logout_tokens_with_made_up_key_ids_do_not_hold_back_the_id_token_refetch() {
        let http = OidcHttp { jwks_refetch_interval: Duration::from_secs(3600), ..OidcHttp::new(&loose()).unwrap() };
        let f = fake(Fake::default()).await;
        let p = provider(f.issuer.clone());
        authorization_request(&http, &p, CB).await.unwrap();
        assert_eq!(f.counts(), (1, 1));
        // An attacker's logout tokens cannot force refetches at all within the interval...
        for n in 0..5 {
            assert!(verify_logout_token(&http, &p, &random_kid_token(n), 1_800_000_000_000).await.is_err());
        }
        assert!(http.refresh_keys(&p, Refetch::Logout).await.unwrap().is_none());
        assert_eq!(f.counts(), (1, 1));
        // ...and an ID token that fails its signature (a real rotation) still gets fresh keys,
        // each time.
        assert!(http.refresh_keys(&p, Refetch::IdToken).await.unwrap().is_some());
        assert!(http.refresh_keys(&p, Refetch::IdToken).await.unwrap().is_some());
        assert_eq!(f.counts(), (1, 3));
        // The logout path's own slot, once its interval passed, is taken before the fetch,
        // so a flood shares one refetch; a failed fetch does not count as fresh keys.
        let short = OidcHttp { jwks_refetch_interval: Duration::from_millis(100), ..OidcHttp::new(&loose()).unwrap() };
        authorization_request(&short, &p, CB).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = short.cache.lock().unwrap().values().next().unwrap().jwks_fetched_at;
        assert!(short.refresh_keys(&p, Refetch::Logout).await.unwrap().is_some());
        assert!(short.refresh_keys(&p, Refetch::Logout).await.unwrap().is_none());
        assert!(short.cache.lock().unwrap().values().next().unwrap().jwks_fetched_at > before);
    }

    #[tokio::test]
    async fn a_failed_key_fetch_does_not_count_as_fresh_keys() {
        let f = fake(Fake::default()).await;
        let p = provider(f.issuer.clone());
        let http = OidcHttp::new(&loose()).unwrap();
        authorization_request(&http, &p, CB).await.unwrap();
        let before = http.cache.lock().unwrap().values().next().unwrap().jwks_fetched_at;
        // Point the cached key set URL at a port nothing listens on: the fetch fails.
        {
            let mut cache = http.cache.lock().unwrap();
            let c = cache.values_mut().next().unwrap();
            let gone = openidconnect::JsonWebKeySetUrl::new("http://127.0.0.1:9/jwks".into()).unwrap();
            c.metadata = c.metadata.clone().set_jwks_uri(gone);
        }
        assert!(http.refresh_keys(&p, Refetch::IdToken).await.is_err());
        assert_eq!(http.cache.lock().unwrap().values().next().unwrap().jwks_fetched_at, before);
    }

    /// A private CA and a provider certificate it issued for `idp.test`; the CA's PEM file.
    fn private_ca(dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test provider CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["idp.test".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut cfg = (*crate::tls::server_config(vec![leaf.der().clone()], der).unwrap()).clone();
        // The fake speaks HTTP/1.1 only.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(cfg), ca_file)
    }

    /// Ward's client with `idp.test` resolving to `ip` (instead of asking DNS).
    fn resolving(config: &OidcConfig, ip: &str) -> OidcHttp {
        let fixed = HashMap::from([("idp.test".to_owned(), vec![ip.parse().unwrap()])]);
        OidcHttp::with_resolver(config, CheckedResolver { allow_loopback: config.allow_http_loopback, fixed: Arc::new(fixed) }).unwrap()
    }

    #[tokio::test]
    async fn a_private_ca_is_trusted_only_with_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tls, ca_file) = private_ca(dir.path());
        let f = fake(Fake { tls: Some((tls, "idp.test")), ..Fake::default() }).await;
        let p = provider(f.issuer.clone());
        let without = resolving(&loose(), "127.0.0.1");
        let e = authorization_request(&without, &p, CB).await.unwrap_err();
        assert!(matches!(e, OidcError::Provider(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        let with = resolving(&OidcConfig { ca_file: Some(ca_file.clone()), ..loose() }, "127.0.0.1");
        authorization_request(&with, &p, CB).await.unwrap();
        // A bad file is refused by the configuration check at start.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        // A PEM block whose content is not a certificate: refused at start, not left out.
        let corrupt = dir.path().join("corrupt.pem");
        let good = std::fs::read_to_string(&ca_file).unwrap();
        std::fs::write(&corrupt, format!("{good}-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n")).unwrap();
        let e = OidcConfig { ca_file: Some(corrupt.clone()), ..OidcConfig::default() }.validate().unwrap_err();
        assert!(e.0.contains("certificate 2 cannot be parsed"), "{}", e.0);
        assert!(OidcHttp::new(&OidcConfig { ca_file: Some(corrupt), ..OidcConfig::default() }).is_err(), "no client without its roots");
        for bad in [junk, dir.path().join("missing.pem")] {
            let e = OidcConfig { ca_file: Some(bad), ..OidcConfig::default() }.validate().unwrap_err();
            assert!(e.0.contains("oidc.ca_file"), "{}", e.0);
        }
        assert!(OidcConfig { ca_file: Some(ca_file), ..OidcConfig::default() }.validate().is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_never_connected_to() {
        let dir = tempfile::tempdir().unwrap();
        let (tls, ca_file) = private_ca(dir.path());
        let f = fake(Fake { tls: Some((tls, "idp.test")), ..Fake::default() }).await;
        let p = provider(f.issuer.clone());
        // A public-looking name that resolves (or rebinds) to loopback: refused without the
        // test allowance, before any connection.
        let strict = OidcConfig { ca_file: Some(ca_file.clone()), ..OidcConfig::default() };
        assert!(strict.clone().validate().is_ok());
        let e = authorization_request(&resolving(&strict, "127.0.0.1"), &p, CB).await.unwrap_err();
        assert!(e.to_string().contains("internal address"), "{e}");
        assert_eq!(f.counts(), (0, 0));
        // The same name to a private address is refused even with the loopback allowance.
        let allowed = OidcConfig { ca_file: Some(ca_file), ..loose() };
        for ip in ["10.0.0.5", "169.254.169.254", "::ffff:192.168.1.1", "fd00::1", "224.0.0.1"] {
            let e = authorization_request(&resolving(&allowed, ip), &p, CB).await.unwrap_err();
            assert!(e.to_string().contains("internal address"), "{ip}: {e}");
        }
        assert_eq!(f.counts(), (0, 0));
        // With the allowance, loopback is reached.
        authorization_request(&resolving(&allowed, "127.0.0.1"), &p, CB).await.unwrap();
        assert_eq!(f.counts(), (1, 1));
    }

    #[test]
    fn address_rule() {
        for ip in [
            "127.0.0.1",
            "10.1.1.1",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            // IPv4 embedded in IPv6: compatible, NAT64 (both prefixes), 6to4.
            "::10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::192.168.0.1",
            "2002:0a00:0001::1",
            "2002:7f00:0001::",
            // Site-local, benchmarking, IETF protocol assignments, reserved.
            "fec0::1",
            "feff::1",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "240.0.0.1",
            "250.1.2.3",
        ] {
            assert!(!address_allowed(ip.parse().unwrap(), false), "{ip}");
        }
        // Public IPv4 behind the same prefixes is fine.
        for ip in ["64:ff9b::8.8.8.8", "2002:0808:0808::1", "198.20.0.1", "192.0.2.1", "223.255.255.1"] {
            assert!(address_allowed(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(address_allowed("::1".parse().unwrap(), true));
        assert!(!address_allowed("10.1.1.1".parse().unwrap(), true));
        assert!(address_allowed("8.8.8.8".parse().unwrap(), false));
        assert!(address_allowed("2001:db8::1".parse().unwrap(), false));
    }

    #[tokio::test]
    async fn provider_answers_over_one_mebibyte_are_refused() {
        let http = OidcHttp::new(&loose()).unwrap();
        let small = fake_provider(None, 1000).await;
        assert!(authorization_request(&http, &provider(small), "https://ward.example.org/cb").await.is_ok());
        let big = fake_provider(None, MAX_BODY + 1).await;
        let e = authorization_request(&http, &provider(big), "https://ward.example.org/cb").await.unwrap_err();
        assert!(matches!(e, OidcError::Provider(_)), "{e}");
    }

    #[tokio::test]
    async fn the_browser_is_never_sent_to_a_plain_http_authorization_endpoint() {
        let http = OidcHttp::new(&OidcConfig { allow_http_loopback: true, ..OidcConfig::default() }).unwrap();
        let issuer = fake_provider(Some("http://idp.example.org/auth"), 0).await;
        let e = authorization_request(&http, &provider(issuer), "https://ward.example.org/cb").await.unwrap_err();
        assert!(matches!(e, OidcError::Settings(_)), "{e}");
    }

    #[test]
    fn payloads_of_malformed_tokens_are_errors() {
        assert!(payload("a").is_err());
        assert!(payload("a.!!!.c").is_err());
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(payload(&format!("h.{p}.s")).unwrap()["sub"], "x");
    }
}
