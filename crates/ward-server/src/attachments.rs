//! Attachment content: checked, cleaned of location metadata, sealed chunk by chunk and kept in
//! the attachment store (a directory or an S3-compatible bucket, through `object_store`).
//!
//! Upload: the first bytes are sniffed (`infer`) and must be an allowed type matching the
//! declared one; PDFs then stream through the sealer into a multipart upload, never whole in
//! memory. JPEG, PNG and WebP images are gathered (within the size limit) so that their EXIF,
//! XMP and text metadata can be dropped (`img-parts`) before sealing. The size limit is
//! enforced as bytes arrive.
//!
//! Download: a first pass reads and authenticates the whole sealed object without keeping any
//! of it, so a truncated, reordered or altered object answers 500 `attachment_damaged` before
//! a single header is sent; a second pass decrypts as it streams. Should the object change
//! between the passes, the body ends with an error: the connection is cut short of its
//! Content-Length, never passed off as a complete file.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use futures_util::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use ward_crypto::stream::{Decryptor, Encryptor, sealed_len};
use ward_store::{AttachmentDraft, OpenedAttachment};

use crate::config::{AttachmentStoreKind, Config};
use crate::problem::ApiError;

/// Bytes looked at to recognise the content type.
const SNIFF_LEN: usize = 8 * 1024;
/// Multipart upload part size (S3's minimum is 5 MiB).
const PART_LEN: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 2;
/// Plaintext fed to the sealer at a time when the content is already in memory.
const FEED_LEN: usize = 256 * 1024;

/// The attachment store and the rules uploads follow.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    max_bytes: u64,
    allowed: Vec<String>,
}

/// What an upload delivered: the sniffed type and the size actually stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Content type as recognised from the content.
    pub content_type: &'static str,
    /// Plaintext bytes stored (after metadata removal for images).
    pub size: u64,
}

fn storage_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal_cause(format!("attachment store: {e}"))
}

impl Blobs {
    /// Opens the attachment store the configuration names (creating the directory for `fs`).
    pub fn from_config(config: &Config) -> anyhow::Result<Blobs> {
        let a = &config.attachments;
        let store: Arc<dyn ObjectStore> = match a.store {
            AttachmentStoreKind::Fs => {
                let dir = a.dir(&config.data_dir);
                std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create attachment directory {}: {e}", dir.display()))?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
            }
            AttachmentStoreKind::S3 => {
                let s3 = &a.s3;
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_region(&s3.region);
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                }
                Arc::new(b.build()?)
            }
        };
        Ok(Blobs::new(store, a.max_bytes, a.allowed_types.clone()))
    }

    /// An attachment store with the given limits.
    pub fn new(store: Arc<dyn ObjectStore>, max_bytes: u64, allowed: Vec<String>) -> Blobs {
        Blobs { store, max_bytes, allowed }
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The size limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Checks, cleans, seals and stores an upload. Nothing is left in the store on failure.
    pub async fn upload<S, E>(&self, draft: &AttachmentDraft, declared: &str, body: S) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut body = Limited { inner: body, seen: 0, max: self.max_bytes };
        // Recognise the type from the first bytes before storing anything.
        let mut head = Vec::with_capacity(SNIFF_LEN);
        let mut ended = false;
        while head.len() < SNIFF_LEN {
            match body.next_chunk().await? {
                Some(b) => head.extend_from_slice(&b),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let sniffed = infer::get(&head).map(|t| t.mime_type());
        let Some(content_type) = sniffed.and_then(|t| crate::config::SUPPORTED_ATTACHMENT_TYPES.iter().copied().find(|s| *s == t)) else {
            return Err(type_not_allowed());
        };
        if !self.allowed.iter().any(|a| a == content_type) || declared != content_type {
            return Err(type_not_allowed());
        }
        let path = ObjectPath::from(draft.object_key());
        let upload = self.store.put_multipart(&path).await.map_err(storage_error)?;
        let mut out = WriteMultipart::new_with_chunk_size(upload, PART_LEN);
        let mut enc = Encryptor::new(draft.key(), &draft.stream_context()).map_err(ApiError::internal_cause)?;
        let written = match strippable(content_type) {
            true => {
                async {
                    let mut all = head;
                    if !ended {
                        while let Some(b) = body.next_chunk().await? {
                            all.extend_from_slice(&b);
                        }
                    }
                    let clean = strip_metadata(content_type, Bytes::from(all))?;
                    for piece in clean.chunks(FEED_LEN) {
                        out.write(&enc.update(piece));
                        out.wait_for_capacity(PART_CONCURRENCY).await.map_err(storage_error)?;
                    }
                    Ok::<u64, ApiError>(clean.len() as u64)
                }
                .await
            }
            false => {
                async {
                    out.write(&enc.update(&head));
                    let mut size = head.len() as u64;
                    if !ended {
                        while let Some(b) = body.next_chunk().await? {
                            size += b.len() as u64;
                            out.write(&enc.update(&b));
                            out.wait_for_capacity(PART_CONCURRENCY).await.map_err(storage_error)?;
                        }
                    }
                    Ok(size)
                }
                .await
            }
        };
        match written {
            Ok(size) => {
                out.write(&enc.finish());
                out.finish().await.map_err(storage_error)?;
                Ok(Stored { content_type, size })
            }
            Err(e) => {
                if let Err(abort) = out.abort().await {
                    tracing::warn!(error = %abort, "could not abort an attachment upload");
                }
                Err(e)
            }
        }
    }

    /// Removes stored content (an upload whose record could not be written, or content whose
    /// key was crypto-shredded); returns whether it is gone.
    pub async fn remove(&self, object_key: &str) -> bool {
        match self.store.delete(&ObjectPath::from(object_key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not remove attachment content");
                false
            }
        }
    }

    /// Checks the whole sealed object, then returns a body that decrypts it as it streams.
    pub async fn download(&self, opened: &OpenedAttachment) -> Result<Body, ApiError> {
        let path = ObjectPath::from(opened.object_key.clone());
        let ctx = opened.stream_context();
        let head = self.store.head(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => damaged("the attachment's content is missing"),
            e => storage_error(e),
        })?;
        if head.size != sealed_len(opened.attachment.size) {
            return Err(damaged("the attachment's content has the wrong length"));
        }
        // First pass: authenticate every chunk, keeping nothing.
        let mut dec = Decryptor::new(opened.key(), &ctx).map_err(ApiError::internal_cause)?;
        let mut sealed = self.store.get(&path).await.map_err(storage_error)?.into_stream();
        while let Some(b) = sealed.next().await {
            let b = b.map_err(storage_error)?;
            dec.update(&b).map_err(|_| damaged("the attachment's content fails authentication"))?;
        }
        dec.finish().map_err(|_| damaged("the attachment's content fails authentication"))?;
        // Second pass: decrypt as the client reads.
        let dec = Decryptor::new(opened.key(), &ctx).map_err(ApiError::internal_cause)?;
        let sealed = self.store.get(&path).await.map_err(storage_error)?.into_stream();
        let plain = futures_util::stream::unfold(Some((sealed, dec)), |state| async move {
            let (mut sealed, mut dec) = state?;
            loop {
                let failed = || std::io::Error::other("attachment content changed or failed authentication while streaming");
                match sealed.next().await {
                    Some(Ok(b)) => match dec.update(&b) {
                        Ok(p) if p.is_empty() => continue,
                        Ok(p) => return Some((Ok(Bytes::from(p)), Some((sealed, dec)))),
                        Err(_) => return Some((Err(failed()), None)),
                    },
                    Some(Err(_)) => return Some((Err(failed()), None)),
                    None => {
                        return match dec.finish() {
                            Ok(p) => Some((Ok(Bytes::from(p)), None)),
                            Err(_) => Some((Err(failed()), None)),
                        };
                    }
                }
            }
        });
        Ok(Body::from_stream(plain))
    }
}

fn type_not_allowed() -> ApiError {
    ApiError::attachment_type_not_allowed()
}

fn damaged(why: &'static str) -> ApiError {
    let mut e = ApiError::attachment_damaged();
    e.internal = Some(why.to_owned());
    e
}

/// A body stream that refuses to go past the size limit.
struct Limited<S> {
    inner: S,
    seen: u64,
    max: u64,
}

impl<S, E> Limited<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Err(_)) => Err(ApiError::invalid_body().detail("the upload was interrupted")),
            Some(Ok(b)) => {
                self.seen += b.len() as u64;
                if self.seen > self.max {
                    return Err(too_large(self.max));
                }
                Ok(Some(b))
            }
        }
    }
}

/// 413 with the limit in the detail.
pub(crate) fn too_large(max: u64) -> ApiError {
    ApiError::attachment_too_large().detail(format!("attachments are limited to {max} bytes"))
}

/// Whether location metadata is removed from this type before it is stored.
fn strippable(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp")
}

/// Drops every metadata block that can carry a location or other identifying text: EXIF and
/// XMP (JPEG APP1, PNG eXIf/iTXt, WebP EXIF/XMP), IPTC (JPEG APP13), comments and PNG text
/// chunks. Pixel data, colour profiles and everything needed to display the image stay.
pub fn strip_metadata(content_type: &str, image: Bytes) -> Result<Bytes, ApiError> {
    use img_parts::ImageEXIF;
    let unreadable = |_| ApiError::attachment_type_not_allowed().detail("the image could not be read");
    match content_type {
        "image/jpeg" => {
            use img_parts::jpeg::{Jpeg, markers};
            let mut jpeg = Jpeg::from_bytes(image).map_err(unreadable)?;
            jpeg.segments_mut().retain(|s| !matches!(s.marker(), markers::APP1 | markers::APP13 | markers::COM));
            Ok(jpeg.encoder().bytes())
        }
        "image/png" => {
            use img_parts::png::Png;
            let mut png = Png::from_bytes(image).map_err(unreadable)?;
            for kind in [*b"eXIf", *b"iTXt", *b"tEXt", *b"zTXt"] {
                png.remove_chunks_by_type(kind);
            }
            Ok(png.encoder().bytes())
        }
        "image/webp" => {
            use img_parts::webp::{CHUNK_XMP, WebP};
            let mut webp = WebP::from_bytes(image).map_err(unreadable)?;
            webp.remove_chunks_by_id(CHUNK_XMP);
            // Also recomputes the VP8X flags for the chunks that remain.
            webp.set_exif(None);
            Ok(webp.encoder().bytes())
        }
        _ => Ok(image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_images_are_refused_not_stored() {
        let e = strip_metadata("image/jpeg", Bytes::from_static(b"\xff\xd8\xff\xe1 not really")).unwrap_err();
        assert_eq!(e.code, "attachment_type_not_allowed");
    }

    /// The limit is enforced as chunks arrive: the chunk that crosses it is refused, and the
    /// body is not read any further (the stream below would panic if it were).
    #[tokio::test]
    async fn the_size_limit_stops_reading_at_the_first_byte_over() {
        let chunks = (0..).map(|i| {
            assert!(i < 3, "the body was read past the limit");
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1000]))
        });
        let mut body = Limited { inner: futures_util::stream::iter(chunks), seen: 0, max: 2500 };
        assert_eq!(body.next_chunk().await.unwrap().unwrap().len(), 1000);
        assert_eq!(body.next_chunk().await.unwrap().unwrap().len(), 1000);
        let e = body.next_chunk().await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (413, "attachment_too_large"));
    }

    #[test]
    fn only_images_with_known_metadata_are_rewritten() {
        assert!(strippable("image/jpeg") && strippable("image/png") && strippable("image/webp"));
        assert!(!strippable("application/pdf") && !strippable("image/heic"));
    }
}
