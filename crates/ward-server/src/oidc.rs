//! Talking to an organisation's OpenID Connect provider: discovery, the authorization request
//! (state, nonce, PKCE S256), the code exchange with ID token validation (the `openidconnect`
//! crate checks signature, issuer, audience, expiry and nonce), and the validation of
//! back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0), which that crate does
//! not cover: the signature is checked with the provider's published keys through the crate's
//! JSON Web Key type, the claims here.
//!
//! HTTP goes through a reqwest client of Ward's own (one TLS stack, redirects never followed,
//! so a provider cannot bounce Ward's requests elsewhere; each answer capped at 1 MiB). Issuers
//! must use https and must not be loopback, private or link-local IP literals, except loopback
//! issuers over http when `[oidc] allow_http_loopback` is set (tests). Host names are not
//! resolved and checked here (no DNS-rebinding protection; docs/identity.md says so).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl, JsonWebKey, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use crate::config::OidcConfig;

/// The most bytes Ward reads of any provider answer (discovery, keys, token endpoint).
const MAX_BODY: usize = 1024 * 1024;
/// How long past its `iat` a logout token's id is remembered at most (its `exp` is clamped).
const MAX_LOGOUT_LIFETIME_SECS: i64 = 86_400;

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

/// Ward's HTTP client for providers.
#[derive(Clone)]
pub struct OidcHttp {
    client: reqwest::Client,
    allow_http_loopback: bool,
}

impl OidcHttp {
    /// A client with the configured timeout that never follows redirects.
    pub fn new(config: &OidcConfig) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.http_timeout_secs))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { client, allow_http_loopback: config.allow_http_loopback }
    }

    /// Checks an issuer URL against the transport rule (https, or http on loopback when
    /// allowed) and refuses internal IP literals (loopback, private, link-local, unspecified)
    /// unless loopback is allowed, so an admin cannot point Ward at its own network by address.
    pub fn check_issuer(&self, issuer: &str) -> Result<IssuerUrl, OidcError> {
        let url = IssuerUrl::new(issuer.to_owned()).map_err(|_| OidcError::Settings("the issuer is not a URL".into()))?;
        let parsed = url.url();
        if !self.allow_http_loopback && parsed.host_str().is_some_and(is_internal_host) {
            return Err(OidcError::Settings("the issuer must not be an internal address".into()));
        }
        match parsed.scheme() {
            "https" => Ok(url),
            "http" if self.allow_http_loopback && is_loopback(parsed.host_str().unwrap_or("")) => Ok(url),
            _ => Err(OidcError::Settings("the issuer must use https".into())),
        }
    }

    /// Whether a URL the browser is sent to, or Ward calls, meets the transport rule.
    fn transport_ok(&self, url: &str) -> bool {
        url.starts_with("https://")
            || (self.allow_http_loopback
                && reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && is_loopback(u.host_str().unwrap_or(""))))
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost")
}

/// Loopback, private, link-local, unspecified and similar internal addresses (as literals),
/// and `localhost`.
fn is_internal_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => internal_v4(v4),
        Ok(IpAddr::V6(v6)) => {
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(internal_v4)
        }
        Err(_) => {
            let d = bare.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space (carrier NAT)
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
            let mut res = self
                .client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(e.without_url().to_string()))?;
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

/// A provider as the flow needs it.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
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

async fn discover(http: &OidcHttp, issuer: &str) -> Result<CoreProviderMetadata, OidcError> {
    let url = http.check_issuer(issuer)?;
    CoreProviderMetadata::discover_async(url, http).await.map_err(|e| OidcError::Provider(e.to_string()))
}

/// Discovers the provider and builds the authorization request.
pub async fn authorization_request(http: &OidcHttp, p: &ProviderSettings, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
    let metadata = discover(http, &p.issuer).await?;
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
    let metadata = discover(http, &p.issuer).await?;
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
    let verified =
        id_token.claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned())).map_err(|e| OidcError::Token(e.to_string()))?;
    let subject = verified.subject().as_str().to_owned();
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
    let metadata = discover(http, &p.issuer).await?;
    let signing_input = format!("{header_b64}.{payload_b64}");
    let verified = metadata
        .jwks()
        .keys()
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.key_id().is_some_and(|id| id.as_str() == kid)))
        .any(|k| k.verify_signature(&alg, signing_input.as_bytes(), &signature).is_ok());
    if !verified {
        return Err(OidcError::Token("no provider key verifies the signature".into()));
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
        let strict = OidcHttp::new(&OidcConfig::default());
        assert!(strict.check_issuer("https://idp.example.org").is_ok());
        assert!(strict.check_issuer("http://127.0.0.1:4000").is_err());
        let loose = OidcHttp::new(&OidcConfig { allow_http_loopback: true, ..OidcConfig::default() });
        assert!(loose.check_issuer("http://127.0.0.1:4000").is_ok());
        assert!(loose.check_issuer("http://idp.example.org").is_err());
        assert!(loose.check_issuer("ftp://127.0.0.1").is_err());
    }

    #[test]
    fn internal_issuer_addresses_are_refused_unless_loopback_is_allowed() {
        let strict = OidcHttp::new(&OidcConfig::default());
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
        ] {
            assert!(strict.check_issuer(bad).is_err(), "{bad}");
        }
        assert!(strict.check_issuer("https://8.8.8.8").is_ok());
        assert!(strict.check_issuer("https://[2001:db8::1]").is_ok());
        let loose = OidcHttp::new(&OidcConfig { allow_http_loopback: true, ..OidcConfig::default() });
        assert!(loose.check_issuer("https://10.1.2.3").is_ok());
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

    /// A provider on 127.0.0.1 answering discovery with `metadata` (padded with `pad` bytes of
    /// spaces) and an empty key set. Returns its issuer.
    async fn fake_provider(auth_endpoint: Option<&str>, pad: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let auth = auth_endpoint.map_or_else(|| format!("{issuer}/auth"), str::to_owned);
        let metadata = serde_json::json!({
            "issuer": issuer, "authorization_endpoint": auth, "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"), "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
            + &" ".repeat(pad);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let metadata = metadata.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = if String::from_utf8_lossy(&req).contains("/jwks") { r#"{"keys":[]}"#.to_owned() } else { metadata };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                });
            }
        });
        issuer
    }

    fn provider(issuer: String) -> ProviderSettings {
        ProviderSettings { issuer, client_id: "ward".into(), client_secret: None, scopes: vec![] }
    }

    #[tokio::test]
    async fn provider_answers_over_one_mebibyte_are_refused() {
        let http = OidcHttp::new(&OidcConfig { allow_http_loopback: true, ..OidcConfig::default() });
        let small = fake_provider(None, 1000).await;
        assert!(authorization_request(&http, &provider(small), "https://ward.example.org/cb").await.is_ok());
        let big = fake_provider(None, MAX_BODY + 1).await;
        let e = authorization_request(&http, &provider(big), "https://ward.example.org/cb").await.unwrap_err();
        assert!(matches!(e, OidcError::Provider(_)), "{e}");
    }

    #[tokio::test]
    async fn the_browser_is_never_sent_to_a_plain_http_authorization_endpoint() {
        let http = OidcHttp::new(&OidcConfig { allow_http_loopback: true, ..OidcConfig::default() });
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
