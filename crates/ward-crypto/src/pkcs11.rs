//! The PKCS#11 key provider: KEKs are AES-256 keys generated inside an HSM token and never
//! leave it.
//!
//! Each KEK version is a token object labelled `<key_label>-v<N>` (sensitive, not
//! extractable); its id is `pkcs11:<key_label>-v<N>` and the highest N is current. Wrapping is
//! AES-GCM performed by the token (`CKM_AES_GCM`, a random 12-byte IV, the [`WrapContext`]
//! as additional data, a 128-bit tag); the blob is `iv ‖ ciphertext ‖ tag`.
//!
//! PKCS#11 calls block, so every operation runs on tokio's blocking pool with a session taken
//! from a small pool (a session is used by one thread at a time). Each wrap checks whether
//! `<key_label>-v<N+1>` has appeared, so a rotation done by another process (`ward keys
//! rotate`) is picked up by a running server at its next wrap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Date};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{KEY_LEN, random_array};
use crate::provider::{KekInfo, KeyBytes, KeyProvider, WrapContext, WrappedKey, current_kek_refused};

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// How to reach the HSM (`[keys.pkcs11]` in the configuration).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Options {
    /// The PKCS#11 module (shared library) to load.
    pub module: std::path::PathBuf,
    /// The label of the token holding Ward's KEKs.
    pub token_label: String,
    /// The user PIN. Prefer the environment (`WARD_KEYS__PKCS11__PIN`) to the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// KEK objects are labelled `<key_label>-v<N>`.
    pub key_label: String,
}

impl Default for Pkcs11Options {
    fn default() -> Self {
        Pkcs11Options {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "ward".into(),
            pin: None,
            key_label: "ward-kek".into(),
        }
    }
}

impl std::fmt::Debug for Pkcs11Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Options")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &self.pin.as_ref().map(|_| "****"))
            .field("key_label", &self.key_label)
            .finish()
    }
}

/// Connects to the HSM the options name: loads the module, finds the token, logs in, and
/// creates `<key_label>-v1` when the token holds no KEK yet.
pub fn connect(options: &Pkcs11Options) -> Result<Arc<dyn KeyProvider>, CryptoError> {
    Ok(Arc::new(Pkcs11KeyProvider::connect(options)?))
}

/// KEKs in a PKCS#11 token.
pub struct Pkcs11KeyProvider {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    key_label: String,
    /// Idle sessions; one is taken per operation and returned afterwards.
    sessions: Mutex<Vec<Session>>,
    /// The current version as last seen.
    current: Mutex<u32>,
}

fn p11(what: &str, e: P11Error) -> CryptoError {
    match e {
        P11Error::Pkcs11(RvError::PinIncorrect, _) => {
            CryptoError::Provider("the PKCS#11 token refused the PIN (CKR_PIN_INCORRECT): check keys.pkcs11.pin".into())
        }
        P11Error::Pkcs11(RvError::PinLocked, _) => CryptoError::Provider("the PKCS#11 token's user PIN is locked (CKR_PIN_LOCKED)".into()),
        e => CryptoError::Provider(format!("PKCS#11 {what}: {e}")),
    }
}

/// The loaded, initialised module at `path`. A module is initialised once per process and
/// kept for the process's life: finalising it (which dropping cryptoki's context does) would end
/// every session of every provider using it.
fn module(path: &std::path::Path) -> Result<Pkcs11, CryptoError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().map_err(lock_err)?;
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| CryptoError::Provider(format!("cannot load the PKCS#11 module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(p11("initialisation", e)),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

fn lock_err<T>(_: T) -> CryptoError {
    CryptoError::Provider("lock poisoned".into())
}

impl Pkcs11KeyProvider {
    /// Loads the module, finds the token by label and logs in as the user. Creates the first
    /// KEK version when the token has none.
    pub fn connect(options: &Pkcs11Options) -> Result<Pkcs11KeyProvider, CryptoError> {
        let pin = options.pin.clone().ok_or_else(|| {
            CryptoError::Provider("no PIN: set keys.pkcs11.pin (better: the WARD_KEYS__PKCS11__PIN environment variable)".into())
        })?;
        if options.key_label.is_empty() {
            return Err(CryptoError::Provider("keys.pkcs11.key_label is empty".into()));
        }
        let ctx = module(&options.module)?;
        let mut slot = None;
        for s in ctx.get_slots_with_initialized_token().map_err(|e| p11("listing slots", e))? {
            let info = ctx.get_token_info(s).map_err(|e| p11("reading token info", e))?;
            if info.label().trim_end() == options.token_label {
                slot = Some(s);
                break;
            }
        }
        let slot =
            slot.ok_or_else(|| CryptoError::Provider(format!("no initialised PKCS#11 token is labelled {:?}", options.token_label)))?;
        let inner = Arc::new(Inner {
            ctx,
            slot,
            pin: AuthPin::new(pin),
            key_label: options.key_label.clone(),
            sessions: Mutex::new(Vec::new()),
            current: Mutex::new(0),
        });
        inner.with_session(|s| {
            let versions = inner.versions(s)?;
            let newest = match versions.last() {
                Some((v, _)) => *v,
                None => {
                    inner.generate(s, 1)?;
                    1
                }
            };
            *inner.current.lock().map_err(lock_err)? = newest;
            Ok(())
        })?;
        Ok(Pkcs11KeyProvider { inner })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Session) -> Result<T, CryptoError> + Send + 'static,
    ) -> Result<T, CryptoError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_session(|s| f(&inner, s)))
            .await
            .map_err(|e| CryptoError::Provider(format!("PKCS#11 worker: {e}")))?
    }
}

impl Inner {
    /// Runs `f` with a logged-in session from the pool (opening one when none is idle).
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        let idle = self.sessions.lock().map_err(lock_err)?.pop();
        let session = match idle {
            Some(s) => s,
            None => {
                let s = self.ctx.open_rw_session(self.slot).map_err(|e| p11("opening a session", e))?;
                // Login is per application, not per session: later sessions find it done.
                match s.login(UserType::User, Some(&self.pin)) {
                    Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(e) => return Err(p11("login", e)),
                }
                s
            }
        };
        let out = f(&session);
        // A session whose token went away is not worth keeping.
        let broken = matches!(&out, Err(CryptoError::Provider(m)) if m.contains("CKR_SESSION") || m.contains("CKR_DEVICE") || m.contains("CKR_TOKEN"));
        if !broken {
            self.sessions.lock().map_err(lock_err)?.push(session);
        }
        out
    }

    fn label(&self, version: u32) -> String {
        format!("{}-v{version}", self.key_label)
    }

    fn kek_id(&self, version: u32) -> String {
        format!("pkcs11:{}", self.label(version))
    }

    fn parse_kek_id(&self, kek_id: &str) -> Result<u32, CryptoError> {
        kek_id
            .strip_prefix("pkcs11:")
            .and_then(|l| l.strip_prefix(self.key_label.as_str()))
            .and_then(|l| l.strip_prefix("-v"))
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))
    }

    fn find(&self, s: &Session, version: u32) -> Result<Option<ObjectHandle>, CryptoError> {
        let found = s
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(self.label(version).into_bytes())])
            .map_err(|e| p11("finding a KEK", e))?;
        Ok(found.first().copied())
    }

    /// Every KEK version on the token, oldest first, with its handle.
    fn versions(&self, s: &Session) -> Result<Vec<(u32, ObjectHandle)>, CryptoError> {
        let handles = s
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES)])
            .map_err(|e| p11("listing keys", e))?;
        let prefix = format!("{}-v", self.key_label);
        let mut out = Vec::new();
        for h in handles {
            let attrs = s.get_attributes(h, &[AttributeType::Label]).map_err(|e| p11("reading a key label", e))?;
            for a in attrs {
                if let Attribute::Label(l) = a
                    && let Some(v) =
                        std::str::from_utf8(&l).ok().and_then(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<u32>().ok())
                    && v > 0
                {
                    out.push((v, h));
                }
            }
        }
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// Creates KEK version `version` inside the token.
    fn generate(&self, s: &Session, version: u32) -> Result<ObjectHandle, CryptoError> {
        let today = time::OffsetDateTime::now_utc().date();
        let date = Date::new_from_str_slice(
            &format!("{:04}", today.year()),
            &format!("{:02}", u8::from(today.month())),
            &format!("{:02}", today.day()),
        )
        .map_err(|e| p11("building a date", e))?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen((KEY_LEN as u64).into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(self.label(version).into_bytes()),
            Attribute::StartDate(date),
        ];
        s.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| p11("generating a KEK", e))
    }

    /// The current version and its handle, noticing versions created by other processes.
    fn current(&self, s: &Session) -> Result<(u32, ObjectHandle), CryptoError> {
        let known = *self.current.lock().map_err(lock_err)?;
        if self.find(s, known + 1)?.is_none()
            && let Some(h) = self.find(s, known)?
        {
            return Ok((known, h));
        }
        let (v, h) = *self.versions(s)?.last().ok_or_else(|| CryptoError::Provider("the token holds no KEK".into()))?;
        *self.current.lock().map_err(lock_err)? = v;
        Ok((v, h))
    }
}

fn date_to_unix_ms(d: &Date) -> Option<i64> {
    if d.is_empty() {
        return None;
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.trim().parse::<i64>().ok();
    let (y, m, day) = (num(&d.year)?, num(&d.month)?, num(&d.day)?);
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(day).ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

#[async_trait]
impl KeyProvider for Pkcs11KeyProvider {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    async fn wrap(&self, ctx: &WrapContext, key: &KeyBytes) -> Result<WrappedKey, CryptoError> {
        let aad = ctx.aad();
        let key = key.clone();
        self.blocking(move |inner, s| {
            let (version, handle) = inner.current(s)?;
            let mut iv: [u8; IV_LEN] = random_array();
            let iv_copy = iv;
            let params = GcmParams::new(&mut iv, &aad, ((TAG_LEN * 8) as u64).into()).map_err(|e| p11("GCM parameters", e))?;
            let ct = s.encrypt(&Mechanism::AesGcm(params), handle, key.as_ref()).map_err(|e| p11("wrapping", e))?;
            let mut blob = Vec::with_capacity(IV_LEN + ct.len());
            blob.extend_from_slice(&iv_copy);
            blob.extend_from_slice(&ct);
            Ok(WrappedKey { kek_id: inner.kek_id(version), blob })
        })
        .await
    }

    async fn unwrap(&self, ctx: &WrapContext, wrapped: &WrappedKey) -> Result<KeyBytes, CryptoError> {
        let version = self.inner.parse_kek_id(&wrapped.kek_id)?;
        if wrapped.blob.len() != IV_LEN + KEY_LEN + TAG_LEN {
            return Err(CryptoError::Format("a PKCS#11-wrapped key is iv ‖ ciphertext ‖ tag (60 bytes)"));
        }
        let aad = ctx.aad();
        let blob = wrapped.blob.clone();
        let kek_id = wrapped.kek_id.clone();
        self.blocking(move |inner, s| {
            let handle = inner.find(s, version)?.ok_or(CryptoError::UnknownKek(kek_id))?;
            let mut iv = [0u8; IV_LEN];
            iv.copy_from_slice(&blob[..IV_LEN]);
            let params = GcmParams::new(&mut iv, &aad, ((TAG_LEN * 8) as u64).into()).map_err(|e| p11("GCM parameters", e))?;
            let plain = Zeroizing::new(match s.decrypt(&Mechanism::AesGcm(params), handle, &blob[IV_LEN..]) {
                Ok(p) => p,
                // The standard answer to a failed tag check is CKR_ENCRYPTED_DATA_INVALID;
                // SoftHSM answers CKR_GENERAL_ERROR.
                Err(P11Error::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::GeneralError, _)) => {
                    return Err(CryptoError::Decrypt);
                }
                Err(e) => return Err(p11("unwrapping", e)),
            });
            if plain.len() != KEY_LEN {
                return Err(CryptoError::Format("an unwrapped data key is 32 bytes"));
            }
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            out.copy_from_slice(&plain);
            Ok(out)
        })
        .await
    }

    async fn rotate(&self) -> Result<String, CryptoError> {
        self.blocking(|inner, s| {
            let newest = inner.versions(s)?.last().map_or(0, |(v, _)| *v);
            let next = newest + 1;
            inner.generate(s, next)?;
            *inner.current.lock().map_err(lock_err)? = next;
            Ok(inner.kek_id(next))
        })
        .await
    }

    async fn keks(&self) -> Result<Vec<KekInfo>, CryptoError> {
        self.blocking(|inner, s| {
            let versions = inner.versions(s)?;
            let newest = versions.last().map_or(0, |(v, _)| *v);
            let mut out = Vec::with_capacity(versions.len());
            for (v, h) in versions {
                // Unknown when the token cannot give it back (SoftHSM 2.6 fails reading the
                // date of a private object): the inventory shows no date then.
                let created_at = s
                    .get_attributes(h, &[AttributeType::StartDate])
                    .ok()
                    .into_iter()
                    .flatten()
                    .find_map(|a| if let Attribute::StartDate(d) = a { date_to_unix_ms(&d) } else { None });
                out.push(KekInfo { kek_id: inner.kek_id(v), created_at, current: v == newest });
            }
            Ok(out)
        })
        .await
    }

    async fn current_kek(&self) -> Result<String, CryptoError> {
        self.blocking(|inner, s| Ok(inner.kek_id(inner.current(s)?.0))).await
    }

    async fn destroy(&self, kek_id: &str) -> Result<(), CryptoError> {
        let version = self.inner.parse_kek_id(kek_id)?;
        let kek_id = kek_id.to_owned();
        self.blocking(move |inner, s| {
            let versions = inner.versions(s)?;
            if versions.last().is_some_and(|(v, _)| *v == version) {
                return Err(current_kek_refused());
            }
            let (_, handle) = versions.into_iter().find(|(v, _)| *v == version).ok_or(CryptoError::UnknownKek(kek_id))?;
            s.destroy_object(handle).map_err(|e| p11("destroying a KEK", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::date_to_unix_ms;
    use cryptoki::types::Date;

    #[test]
    fn start_dates_become_unix_milliseconds() {
        let d = Date::new_from_str_slice("2026", "12", "07").unwrap();
        assert_eq!(date_to_unix_ms(&d), Some(1_796_601_600_000));
        assert_eq!(date_to_unix_ms(&Date::new_empty()), None);
    }
}
